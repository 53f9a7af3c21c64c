"""The pickup program: mail dropped in ``maildrop/`` by Postfix's postdrop(1), into the queue."""
