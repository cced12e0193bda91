"""``silverline demo``: the whole platform on one machine, checked against a ground truth."""
