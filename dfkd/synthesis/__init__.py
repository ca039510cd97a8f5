"""What the inversion methods (ADI, CMI) keep between rounds: the synthetic pool the student
learns from, the memory bank of contrastive features, and the views they optimise through."""
