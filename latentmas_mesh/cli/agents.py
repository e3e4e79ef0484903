"""`latentmas agents add|list|revoke|gateway`: who may use the mesh, in the state directory."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from latentmas_mesh.cli.app import app

if TYPE_CHECKING:
    from latentmas_mesh.agents import Agent, AgentRegistry
    from latentmas_mesh.errors import ProtocolError

agents_app = typer.Typer(
    help="Agents: each one agent id (its CURVE public key) with a key pair and an HTTP token.",
    no_args_is_help=True,
)
app.add_typer(agents_app, name="agents")

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="The registry's directory (default: LATENTMAS_STATE_DIR or ./.latentmas-state).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _registry(state_dir: Path | None) -> AgentRegistry:
    from latentmas_mesh.agents import AgentRegistry, AgentSettings

    overrides = {} if state_dir is None else {"state_dir": state_dir}
    return AgentRegistry.from_settings(AgentSettings.model_validate(overrides))


def _fail(error: ProtocolError) -> NoReturn:
    from latentmas_mesh.agents import InvalidAgentName

    if isinstance(error, InvalidAgentName):
        raise typer.BadParameter(error.message, param_hint="NAME") from error
    typer.echo(f"{error.code.value}: {error.message}", err=True)
    raise typer.Exit(code=1)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds")


@agents_app.command()
def add(
    name: Annotated[str, typer.Argument(help="The agent's name: a-z, 0-9, '_' and '-'.")],
    operator: Annotated[bool, typer.Option("--operator", help="Mark it an operator.")] = False,
    json_output: JsonOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Create an agent: its CURVE key pair and its bearer token, both for one agent id.

    The token is shown this once (the registry keeps only its SHA-256): store it now.
    """
    from latentmas_mesh.errors import ProtocolError

    try:
        with _registry(state_dir) as registry:
            enrolment = registry.add(name, operator=operator)
    except ProtocolError as error:
        _fail(error)
    if json_output:
        typer.echo(json.dumps(enrolment.to_json()))
        return
    agent, keys = enrolment.agent, enrolment.keys
    role = " (operator)" if agent.operator else ""
    typer.echo(f"agent   {agent.name}{role}  {agent.agent_id}")
    typer.echo(f"token   {enrolment.token}  (shown once: store it now)")
    typer.echo(f"public  {keys.public_file}  (the broker admits it from its next start)")
    typer.echo(f"secret  {keys.secret_file}")


@agents_app.command("list")
def list_agents(json_output: JsonOption = False, state_dir: StateDirOption = None) -> None:
    """Print every agent, revoked ones included, oldest first."""
    with _registry(state_dir) as registry:
        agents = registry.agents()
    if json_output:
        typer.echo(json.dumps([agent.to_json() for agent in agents]))
        return
    typer.echo(f"{'name':<24} {'agent id':<40}  {'operator':<8}  {'created':<25}  revoked")
    for agent in agents:
        typer.echo(_row(agent))


def _row(agent: Agent) -> str:
    operator = "yes" if agent.operator else "no"
    created, revoked = _when(agent.created_at_ms), _when(agent.revoked_at_ms)
    return f"{agent.name:<24} {agent.agent_id:<40}  {operator:<8}  {created:<25}  {revoked}"


@agents_app.command()
def revoke(
    name: Annotated[str, typer.Argument(help="The agent to revoke.")],
    state_dir: StateDirOption = None,
) -> None:
    """Revoke an agent: its token fails at once, its public key leaves keys/clients.

    A running broker read its client keys when it started: restart it to refuse the agent's
    CURVE key there too.
    """
    from latentmas_mesh.errors import ProtocolError

    try:
        with _registry(state_dir) as registry:
            agent = registry.revoke(name)
    except ProtocolError as error:
        _fail(error)
    typer.echo(f"revoked {agent.name}  {agent.agent_id}  at {_when(agent.revoked_at_ms)}")


@agents_app.command()
def gateway(json_output: JsonOption = False, state_dir: StateDirOption = None) -> None:
    """Print the gateway's CURVE key pair (created on first use).

    Workers let it act on behalf of agents when its public key is in LATENTMAS_GATEWAY_KEYS.
    """
    with _registry(state_dir) as registry:
        keys = registry.gateway_keys()
    if json_output:
        files = {"public_key_file": str(keys.public_file), "secret_key_file": str(keys.secret_file)}
        typer.echo(json.dumps({"gateway": keys.identity, **files}))
        return
    typer.echo(f"gateway {keys.identity}")
    typer.echo(f"public  {keys.public_file}")
    typer.echo(f"secret  {keys.secret_file}")
