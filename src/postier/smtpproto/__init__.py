"""smtpproto."""
