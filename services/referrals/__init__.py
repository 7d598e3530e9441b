"""The referral tracker: every referral between institutions, its state and deadlines."""
