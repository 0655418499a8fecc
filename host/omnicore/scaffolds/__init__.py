"""The app scaffold ``omnicore new`` copies (``app/``; a plugin's is in
``toolchains/scaffolds/``): template files whose ``$name`` placeholders are filled in."""

from omnicore.scaffolds.render import scaffold_app

__all__ = ["scaffold_app"]
