"""The `hssl` command line: thin typer commands over library functions."""
