"""The local delivery agent (program): aliases, mbox and mailbox_command, as local(8)."""
