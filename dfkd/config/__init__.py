"""The suite's configuration: params files in, one frozen, fully resolved config per run out.

Sources (all strict: unknown or missing keys are errors, see dfkd.schema):
- `params.yaml`: data location, the experiment matrix (dataset -> pairs x methods x seeds and
  its protocol) and the protocols (`paper`, `quick`, `tiny`). Read by Snakemake and by DVC.
- `params/teachers.yaml`: the teacher training recipe per dataset.
- `params/methods/<name>.yaml`: one method variant each: its implementation, its published
  schedule and hyperparameters (every value citing its source) and per-dataset/per-pair
  overrides taken from the reference scripts.
- `params/published.yaml`: the published numbers the reports print beside the reproduced ones.
- `params/released_teachers.yaml`: the published teacher checkpoints an experiment may distil
  from instead of the suite's own (`teacher_source: released`), with the user's sha256 pins.

A protocol may shrink the published schedules (`quick`, `tiny`) and keep their shape:
- fewer epochs move any learning-rate milestones to the same fraction of the schedule;
- `student_steps_per_epoch` repeats each method's own round (its generator and student steps,
  unchanged) as often as that many student steps need, at least once; a method whose one round
  per epoch has more student steps than that (ADI, CMI) keeps its round with that many. The
  published loops of the CMI code base run 400 student steps per epoch (`--ep_steps 400`);
- a smaller batch scales the student's SGD learning rate with the batch, by the protocol's
  `learning_rate_scaling` rule: "linear" (Goyal et al. 2017, arXiv 1706.02677) or "sqrt"
  (Krizhevsky 2014, arXiv 1404.5997; Hoffer et al. 2017, arXiv 1705.08741). Keeping lr 0.1 at a
  batch of 32 instead of 256 kills small students: their ReLUs die within an epoch. Adam
  learning rates (generators) are not scaled.
"""

from dfkd.config.loading import load_suite, load_workflow_params
from dfkd.config.settings import (
    DataSettings,
    Experiment,
    ImportTeacherConfig,
    LoopConfig,
    MethodParams,
    OptimizerConfig,
    Protocol,
    PublishedResult,
    RunConfig,
    StatisticsConfig,
    SuiteParams,
    TeacherRecipe,
    TeacherRunConfig,
    config_hash,
    config_text,
    load_import_config,
    load_run_config,
    load_teacher_config,
    read_yaml,
    save_config,
)
from dfkd.config.suite import Suite

__all__ = [
    "DataSettings",
    "Experiment",
    "ImportTeacherConfig",
    "LoopConfig",
    "MethodParams",
    "OptimizerConfig",
    "Protocol",
    "PublishedResult",
    "RunConfig",
    "StatisticsConfig",
    "Suite",
    "SuiteParams",
    "TeacherRecipe",
    "TeacherRunConfig",
    "config_hash",
    "config_text",
    "load_import_config",
    "load_run_config",
    "load_suite",
    "load_teacher_config",
    "load_workflow_params",
    "read_yaml",
    "save_config",
]
