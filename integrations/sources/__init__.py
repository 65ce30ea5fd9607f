"""Sources Fido polls, tails or reads: vendor APIs, SQL tables, log files, mailboxes."""
