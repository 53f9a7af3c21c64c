"""The smtpd restriction evaluator (library, pure): restriction lists plus facts in, a decision
out.
"""
