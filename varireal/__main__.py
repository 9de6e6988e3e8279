from varireal_pipeline.cli import app

app(prog_name="varireal")
