"""Reports: a dataset's comparison tables (`tables`), a declared study's table (`studies`), and
the formatting and templates they share (`format`)."""
