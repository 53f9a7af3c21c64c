"""The command-line tools (program): postier's verbs and Postfix's tools, thin over the
libraries.
"""
