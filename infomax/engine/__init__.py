"""Training: run directories, checkpoints that resume exactly, and the loops.

    (run directories and checkpoints live in infomax/runs)
    finetune.py    TwinTURBO / FixMatch on a frozen backbone's cached features
"""
