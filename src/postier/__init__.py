"""postier: a mail transfer agent that reads Postfix's configuration and behaves as Postfix does."""

__version__ = "0.1.0"
