"""Evaluation of frozen features: weighted kNN, linear probe, few-label accuracy (and more).

Import the submodules directly (this package imports none of them itself):

    from infomax.eval.knn import weighted_knn           # DINO / MIRA weighted kNN
    from infomax.eval.linear import linear_probe        # standardise + L2 logistic regression
    from infomax.eval.fewshot import balanced_subset, few_label_accuracy

Geometry, plots and the HTML report live in their own submodules beside these.
"""
