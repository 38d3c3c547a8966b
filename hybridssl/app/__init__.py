"""The application layer of hybridssl: jobs that write run directories, reports, plots and
ablations (``hssl train``, ``hssl eval``, ``hssl ablate`` call these). It imports the library
(data, models, losses, weighting, trainer, evaluation metrics, :mod:`hybridssl.runs`); the library
never imports it — as open_clip keeps ``open_clip_train`` apart from ``open_clip``."""
