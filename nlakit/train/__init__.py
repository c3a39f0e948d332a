"""Training: warm-start SFT of the AV and the AR, then GRPO RL with a live AR."""
