"""``python -m broadcast`` runs the command-line interface."""

from broadcast.cli.app import main

if __name__ == "__main__":
    main()
