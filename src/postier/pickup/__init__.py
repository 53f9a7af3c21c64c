"""The pickup process (program): mail that Postfix's postdrop(1) left in ``maildrop/``,
taken into the queue through cleanup, as Postfix's pickup(8).
"""
