"""`hssl shard`: write any supported dataset into WebDataset-style tar shards (read back with the
``shards:DIR`` data spec, e.g. ``hssl train --data shards:DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.console import console, progress_bar


def shard(
    data_spec: Annotated[str, typer.Argument(help="dataset spec: builtin[:k=v,...] | manifest:PATH | coco:ANN:IMAGES | ...")],
    out_dir: Annotated[Path, typer.Argument(help="folder for shard-NNNNNN.tar and index.json (must not hold shards)")],
    shard_size: Annotated[int, typer.Option("--shard-size", help="samples per tar shard")] = 1000,
    audio_format: Annotated[str, typer.Option("--audio-format", help="flac (PCM_24) | wav (float32, lossless)")] = "flac",
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bar")] = False,
) -> None:
    from hybridssl.data.open import open_dataset
    from hybridssl.data.shards import write_shards

    dataset = open_dataset(data_spec)
    bar = progress_bar("shard", enabled=not no_progress, eta=True, text=None)
    with bar:
        task = bar.add_task("shard", total=len(dataset))
        index = write_shards(dataset, out_dir, shard_size, audio_format, progress=lambda i: bar.update(task, completed=i))
    table = Table(title=f"Shards of {index['name']} in {out_dir}")
    for col in ("shards", "samples", "skipped", "MiB", "modalities"):
        table.add_column(col, justify="right")
    skipped = index["skipped"]["skipped"]
    table.add_row(str(len(index["shards"])), str(index["samples"]),
                  ", ".join(f"{k} {v}" for k, v in skipped.items()) or "0",
                  f"{sum(s['bytes'] for s in index['shards']) / 2**20:.1f}", ", ".join(index["modalities"]))
    console.print(table)
    console.print(f"read them with the data spec [bold]shards:{out_dir}[/] (index: {Path(out_dir) / 'index.json'})")
