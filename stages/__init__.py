"""Thin Typer commands, one per DVC stage; `stages.cli:app` is the `animecolor` command."""
