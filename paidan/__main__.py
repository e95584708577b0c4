from paidan.cli import app

app(prog_name="paidan")
