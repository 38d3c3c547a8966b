"""hssl: hybrid self-supervised multimodal pretraining (the training side). Import submodules explicitly."""
