"""The `hssl` application. ``main(argv)`` runs it in-process (used by the tests)."""

from __future__ import annotations

import sys

import typer

from cli.ablate import ablate
from cli.console import console, error
from cli.demo import demo
from cli.distill import distill
from cli.edge import bench, classify, embed, index, search, serve
from cli.evaluate import evaluate
from cli.export import export
from cli.info import info
from cli.shard import shard
from cli.train import train
from hybridssl.errors import NonFiniteLossError

app = typer.Typer(
    name="hssl",
    help="Hybrid self-supervised multimodal pretraining, distillation, export and edge runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(help="Train the hybrid model (default: the small preset on the built-in dataset).")(train)
app.command(help="Summarise a run directory.")(info)
app.command(help="Run the whole pipeline end to end on the built-in dataset.")(demo)
app.command(name="eval", help="Evaluate a run: retrieval, zero-shot, low-label protocols, embedding quality.")(evaluate)
app.command(help="Reproduce the ablation: full vs contrastive-only vs generative-only vs no dynamic weighting.")(ablate)
app.command(help="Write any dataset into WebDataset-style tar shards (read back with --data shards:DIR).")(shard)
app.command(help="Distil a teacher run into small students and compare them side by side.")(distill)
app.command(help="Export a run as a device bundle (ONNX / ONNX Runtime int8+fp16 / OpenVINO IR / TensorRT), "
                 "every step parity-checked.")(export)
app.command(help="Embed files or texts with a bundle (torch-free runtime).")(embed)
app.command(help="Classify a file with a bundle (zero-shot over labels, or the bundle's head).")(classify)
app.command(help="Index a folder of images/audio into a searchable gallery.")(index)
app.command(help="Search a gallery with a text, image or audio query.")(search)
app.command(help="Benchmark a bundle per back end, precision and batch size.")(bench)
app.command(help="Serve a bundle as a small local JSON API.")(serve)

# Errors a user can cause: one clear line, exit code 2, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, KeyError)
# Packages a runtime-only install lacks, and the extra that brings each.
EXTRA_OF = {**dict.fromkeys(("torch", "torchvision", "torchaudio", "timm", "safetensors", "yaml", "matplotlib"), "train"),
            **dict.fromkeys(("onnx", "onnxscript"), "export"), "webdataset": "train", "datasets": "hf",
            "usearch": "runtime"}


def main(argv: list[str] | None = None) -> int:
    """Run ``hssl`` with ``argv`` (default: ``sys.argv[1:]``); returns the process exit code: 0 on
    success, 2 for a user error (one red line), 3 for a diverged run, 130 when aborted."""
    try:
        # standalone_mode=False: click *returns* the code of a typer.Exit instead of raising it
        code = app(args=argv, standalone_mode=False)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
    except (typer.Abort, KeyboardInterrupt):
        console.print("[red]aborted[/]")
        return 130
    except NonFiniteLossError as e:
        error(e)
        return 3
    except ModuleNotFoundError as e:
        extra = EXTRA_OF.get((e.name or "").split(".")[0])
        if e.name is None:  # export.backends.require's own one line, naming the extra
            error(e)
        elif extra is not None:
            error(f"this command needs {e.name}, which is not installed: pip install 'hssl[{extra}]'")
        else:
            raise
        return 2
    except USER_ERRORS as e:
        error(e.args[0] if isinstance(e, KeyError) and e.args else e)
        return 2
    except Exception as e:  # usage errors of click, or of the click that typer vendors (typer._click)
        show, exit_code = getattr(e, "show", None), getattr(e, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            return exit_code
        raise
    return 0 if code is None else code if isinstance(code, int) else 1  # SystemExit("message") → 1, as Python does


if __name__ == "__main__":
    sys.exit(main())
