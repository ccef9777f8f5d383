"""Entry point: `python main.py serve` is the same as `helpdesk serve`."""

from app.cli import main

if __name__ == "__main__":
    main()
