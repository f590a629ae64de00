"""Training: run directories, checkpoints that resume exactly, and the loops.

    rundir.py      create / refuse / resume a run directory; atomic JSON and safetensors writes
    checkpoint.py  weights + optimiser moments + RNG as one safetensors file
    finetune.py    TwinTURBO / FixMatch on a frozen backbone's cached features
"""
