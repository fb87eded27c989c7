"""`python -m emodistill COMMAND ...`: the `emodistill` command (emodistill/cli.py), e.g.
`python -m emodistill score INPUT... --model BUNDLE --out FILE`."""

from emodistill.cli import main

if __name__ == "__main__":  # spawned workers import this module as __mp_main__: nothing runs
    main()
