"""`python -m apexmer`: the same as the `apexmer` command."""

from apexmer.cli.main import main

if __name__ == "__main__":
    main()
