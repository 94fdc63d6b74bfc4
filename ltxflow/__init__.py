"""ltxflow: a declarative pipeline that turns a song and a YAML scene list into an LTX-2.3 music video."""

__version__ = "0.1.0"
