"""The forms of a dataset spec (``--data``), torch-free so that the CLI's help can list them.

``hybridssl.data.open.open_dataset`` reads every form listed here."""

FORMS = (
    "builtin",
    "builtin:KEY=VAL,KEY=VAL",
    "manifest:PATH",
    "coco:ANNOTATIONS_JSON:IMAGES_DIR",
    "avclips:CSV",
    "features:NPZ",
    "shards:DIR_OR_GLOB",
    "hf:PATH[,image=COL,caption=COL,audio=COL,label=COL]",
    "fashion-mnist[:ROOT]",
    "tuxpaint[:ROOT]",
    "openclipart[:ROOT]",
    "digits",
)


def prefix(form: str) -> str:
    """``"coco:ANN:IMAGES"`` → ``"coco"``, ``"tuxpaint[:ROOT]"`` → ``"tuxpaint"``."""
    return form.split(":")[0].split("[")[0]


def forms_help(what: str = "dataset spec") -> str:
    """One line for a ``--data`` option's help: every form, once."""
    return f"{what}: " + " | ".join(dict.fromkeys(f for f in FORMS if f != "builtin"))
