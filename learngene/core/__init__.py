"""The plain-torch core: networks, function-preserving growth, the gradient statistic, the selection rule,
EWC, continual and open-world metrics, and few-shot statistics. Nothing here imports Lightning."""
