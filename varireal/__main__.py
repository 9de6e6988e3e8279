from varireal.cli import app

app(prog_name="varireal")
