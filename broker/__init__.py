"""The broker process: MDP/0.2 routing state, its socket loop, metrics and security."""
