"""Command-line tools (entry points). Nothing in the library imports them."""
