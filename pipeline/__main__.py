"""`python -m pipeline ...` runs the `churn` CLI (what dvc.yaml calls)."""

from pipeline.cli import app

app(prog_name="churn")
