"""The `animecolor` command: one subcommand per pipeline stage."""

import typer

from stages import app as app_stage
from stages import clean, colorize, crawl, evaluate, finetune, pairs, plots, pretrain, recipe, text

app = typer.Typer(name="animecolor", no_args_is_help=True, rich_markup_mode="rich", add_completion=False,
                  help="Reference-based colorization of anime line drawings with diffusion models.")


@app.callback()
def _root() -> None:
    """Reference-based colorization of anime line drawings with diffusion models.

    Each subcommand is one stage of the DVC pipeline (`dvc repro` runs them in order) and
    reads its own section of params.yaml.
    """


app.command("crawl")(crawl.main)
app.command("clean")(clean.main)
app.command("pairs")(pairs.main)
app.command("pretrain")(pretrain.main)
app.command("finetune")(finetune.main)
app.command("text")(text.main)
app.command("evaluate")(evaluate.main)
app.command("export")(colorize.export)
app.command("colorize")(colorize.colorize)
app.command("extract-lines")(colorize.extract_lines)
app.command("app")(app_stage.main)
app.command("plots")(plots.main)
app.command("recipe")(recipe.main)


if __name__ == "__main__":
    app()
