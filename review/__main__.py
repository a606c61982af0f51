from core.cli import cli
from review.app import main

cli(main, lock=False)
