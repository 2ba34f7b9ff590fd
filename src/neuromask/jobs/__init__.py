"""Folder-in, folder-out work: the jobs behind the commands.

- :mod:`neuromask.jobs.trained_model`: a trained model, its record and its validation AD
  sessions (the one way every job gets them);
- :mod:`neuromask.jobs.masks`: group and session masks (``neuromask mask``);
- :mod:`neuromask.jobs.qc`: the quality check of a cohort (``neuromask qc``);
- :mod:`neuromask.jobs.compare`: mask similarity (``neuromask compare``);
- :mod:`neuromask.jobs.sanity`: masks against baseline methods (``neuromask sanity``).

Each job claims its output folder (:mod:`neuromask.io.claim`), writes every setting next
to its results, and resumes after an interruption.
"""
