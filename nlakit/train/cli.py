"""`nlakit sft av|ar`, `nlakit rl` and `nlakit adapt`."""

from __future__ import annotations

from nlakit.config_cli import add_config, config_from_args


def _cmd_sft(args) -> None:
    from nlakit.train.sft import SFTConfig, sft

    config = config_from_args(SFTConfig, args)
    result = sft(config)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result.items())
    print(f"{config.role.upper()} SFT done: {shown}; model at {config.out}/{config.role}")


def _cmd_rl(args) -> None:
    from nlakit.train.rl import RLConfig, rl

    config = config_from_args(RLConfig, args)
    result = rl(config)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float))
    print(f"RL done: {shown}; AV at {config.out}/av, AR at {config.out}/ar")


def _cmd_adapt(args) -> None:
    from nlakit.train.adapt import AdaptConfig, adapt

    av = adapt(config_from_args(AdaptConfig, args))
    print(f"adapted AV at {av}")


def register(sub, chosen: str | None) -> None:
    p = sub.add_parser("sft", help="warm-start SFT of the AV (av) or the AR (ar)")
    p.set_defaults(func=_cmd_sft)
    if chosen == "sft":
        from nlakit.train.sft import SFTConfig

        add_config(p, SFTConfig)  # `role` is positional: nlakit sft av|ar
    p = sub.add_parser("rl", help="GRPO RL of the AV, rewarded by the (co-trained) AR")
    p.set_defaults(func=_cmd_rl)
    if chosen == "rl":
        from nlakit.train.rl import RLConfig

        add_config(p, RLConfig)
    p = sub.add_parser("adapt", help="continue an AV's SFT on a fine-tuned model's activations")
    p.set_defaults(func=_cmd_adapt)
    if chosen == "adapt":
        from nlakit.train.adapt import AdaptConfig

        add_config(p, AdaptConfig)
