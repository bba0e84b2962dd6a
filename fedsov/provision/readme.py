"""The READMEs of a kits folder: one per kit (what it is, the steps, what to replace)
and the index (who runs what, the signing commands, the order to start)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedsov.pki.identity import Role
from fedsov.policy.plan import Plan
from fedsov.provision import layout
from fedsov.provision.commands import shell
from fedsov.provision.kit import Kit

__all__ = ["CA_WARNING", "Context", "index_readme", "node_readme", "operator_readme"]

CA_WARNING = (
    "holds the federation CA's private key ({key}). It belongs to the consortium "
    "operator alone: keep it offline and backed up, and never ship it in a kit. "
    "Whoever holds it can issue certificates for any node."
)
_ROLE_TEXT = {
    Role.coordinator: "the global aggregator: serves the regional aggregators (and any "
    "sites directly below it), runs the rounds, keeps the global model",
    Role.aggregator: "a regional aggregator: serves its region's sites, takes part "
    "upstream with their aggregate and exports only what the plan permits",
    Role.site: "an edge site: trains on its own data, which never leaves it, and dials "
    "out to its upstream; it never listens",
    Role.operator: "the consortium operator's own certificate: reads the federation's "
    "status and stops it; it never takes part in a round",
}


@dataclass(frozen=True)
class Context:
    """What every README of one provisioning shares."""

    plan: Plan
    ca_dir: str  # the CA folder as the operator names it (relative to the kits folder)
    ca_in_kits: bool  # provision made it in the kits folder
    demo_data: bool
    loopback_ports: bool  # servers bind port 0: the real ports are filled in later


def _code(lines: Sequence[str], indent: str = "") -> list[str]:
    return [indent + line for line in ("```sh", *lines, "```")]


def _facts(ctx: Context, kit: Kit) -> list[str]:
    upstream = ctx.plan.node(kit.upstream) if kit.upstream else None
    rows = [
        ("node", f"`{kit.name}`, jurisdiction {kit.jurisdiction}"),
        ("role", f"{kit.role.value}, {_ROLE_TEXT[kit.role]}"),
        (
            "upstream",
            f"`{upstream.name}` ({ctx.plan.role_of(upstream.tier).value}, "
            f"{upstream.jurisdiction}) at `{kit.dials}`"
            if upstream
            else "none: it is the top of the federation",
        ),
        (
            "inbound",
            f"listens on `{kit.listen}` (gRPC over mutual TLS): open this port to its participants"
            if kit.listen
            else "none: it opens no port",
        ),
        (
            "outbound",
            f"dials `{kit.dials}` (gRPC over mutual TLS)" if kit.dials else "none",
        ),
        ("federation", f"`{ctx.plan.federation}`, plan SHA-256 `{ctx.plan.sha256}`"),
    ]
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def _files(kit: Kit) -> list[str]:
    files = kit.files
    lines = [
        f"- `{layout.CONFIG}`: this node's config; every path in it is relative to this folder."
        if kit.role is not Role.operator
        else f"- `{layout.OPERATOR_CONFIG}`: the operator's certificate files and the "
        "coordinator's address (read by `fedsov status`).",
        f"- `{layout.PLAN}`: the federation plan, byte for byte the same at every node "
        "(each call carries its SHA-256; a node with another plan is refused).",
        f"- `{layout.CA_CERT}`: the federation CA's certificate (public; no key).",
        f"- `{layout.SCRIPT}`: makes `{files['key']}` and `{files['csr']}` here.",
    ]
    if kit.role is Role.site:
        lines.append(f"- `{layout.DATA_DIR}/`: the site's training data (see below).")
    return lines


def _steps(ctx: Context, kit: Kit) -> list[str]:
    files = kit.files
    steps = [
        "## Steps",
        "",
        "Run every command in this folder, with the same fedsov version as the other "
        "nodes on the `PATH` (`fedsov --version`).",
        "",
        f"1. Check the plan: `sha256sum {layout.PLAN}` must print `{ctx.plan.sha256}`, "
        f"and `fedsov policy check {layout.PLAN}` must say `plan OK`.",
        f"2. Make this node's private key and certificate request: `sh {layout.SCRIPT}`, "
        "which runs",
        "",
        *_code([shell(kit.csr)], "   "),
        "",
        f"   `{files['key']}` is the private key: it never leaves this machine.",
        f"3. Send `{files['csr']}` (public) to the consortium operator. They check it "
        "and, in the kits folder, run",
        "",
        *_code([shell(kit.sign)], "   "),
        "",
        f"4. Put the `{files['cert']}` they send back in this folder; "
        f"`fedsov pki show {files['cert']}` shows its name, role and jurisdiction.",
    ]
    if kit.start is not None:
        after = f", once `{kit.upstream}` is running" if kit.upstream else ", before any other node"
        steps += [
            f"5. Start the node{after}:",
            "",
            *_code([shell(kit.start)], "   "),
        ]
    else:
        steps += [
            "5. Once the coordinator runs, ask it how the federation is doing, or stop it:",
            "",
            *_code(
                [
                    f"fedsov status --config {layout.OPERATOR_CONFIG}",
                    f"fedsov stop --config {layout.OPERATOR_CONFIG}",
                ],
                "   ",
            ),
        ]
    return steps


def _replace(ctx: Context, kit: Kit) -> list[str]:
    lines = ["## What to replace", ""]
    if kit.role is Role.site:
        data = layout.data_file(kit.name)
        lines.append(
            f"- `{data}` ([data] path in `{layout.CONFIG}`): "
            + (
                "this kit holds the site's demo partition of the plan's [simulation] data; "
                "point it at the site's own data for a real run"
                if ctx.demo_data
                else "a placeholder: put the site's data there (NPZ with arrays `x`, `y`, "
                "or CSV), or point the path at it"
            )
            + "."
        )
    if kit.listen:
        lines.append(
            f"- [server] address `{kit.listen}`: the interface and port to listen on, "
            "if this machine needs others. Tell the operator: the participants dial it."
        )
    if kit.dials:
        section = "[upstream]" if kit.role is not Role.operator else "[operator]"
        lines.append(
            f"- {section} address `{kit.dials}`: if `{kit.upstream}` is reached by another "
            "host or port (the TLS check expects its certificate's name, whatever the address)."
        )
    if ctx.loopback_ports:
        lines.append(
            f"- Port 0: the servers of this provisioning bind a free port and write it to "
            f"`{layout.PORT_FILE}` in their kit; set each participant's upstream address "
            "to the port its upstream wrote."
        )
    if kit.role in (Role.coordinator, Role.aggregator) and ctx.demo_data:
        lines.append(
            f"- `{layout.TEST_DATA}` ([evaluation]): the held-out demo set each round's "
            "model is scored on; replace it, or drop [evaluation]."
        )
    return [*lines, ""] if len(lines) > 2 else []


def node_readme(ctx: Context, kit: Kit) -> str:
    """A node kit's README.md."""
    lines = [
        f"# Kit of `{kit.name}`: {kit.role.value} of federation `{ctx.plan.federation}`",
        "",
        "Everything this node needs to join the federation. Only this node's private key, "
        "made here by step 2, is secret; nothing else in this folder is.",
        "",
        *_facts(ctx, kit),
        "",
        "## Files",
        "",
        *_files(kit),
        "",
        *_steps(ctx, kit),
        "",
        *_replace(ctx, kit),
    ]
    return "\n".join(lines).rstrip() + "\n"


def operator_readme(ctx: Context, kit: Kit) -> str:
    """The operator kit's README.md."""
    lines = [
        f"# Kit of `{kit.name}`: the consortium operator of federation `{ctx.plan.federation}`",
        "",
        f"A certificate of role `operator` for {kit.name}, to read the federation's "
        "status and stop it; it can never take part in a round.",
        "",
        *_facts(ctx, kit),
        "",
        "## Files",
        "",
        *_files(kit),
        "",
        *_steps(ctx, kit),
        "",
        *_replace(ctx, kit),
    ]
    return "\n".join(lines).rstrip() + "\n"


def index_readme(ctx: Context, kits: Sequence[Kit], order: Sequence[str]) -> str:
    """KITS/README.md: the nodes, who runs what, the signing commands, the order to start."""
    by_name = {k.name: k for k in kits}
    nodes = [by_name[n] for n in order]
    operator = [k for k in kits if k.role is Role.operator]
    lines = [
        f"# Kits of federation `{ctx.plan.federation}`",
        "",
        f"Plan `{ctx.plan.source.name}`, SHA-256 `{ctx.plan.sha256}`. One folder per node: "
        "send each node's operator its folder (it holds no private key). Each folder's "
        "README says what to run there.",
        "",
    ]
    if ctx.ca_in_kits:
        key = f"{ctx.ca_dir}/{layout.CA_KEY}"
        lines += [
            f"> **`{ctx.ca_dir}/` is not a kit.** It " + CA_WARNING.format(key=f"`{key}`"),
            "",
        ]
    lines += [
        "| node | role | jurisdiction | upstream | listens on | dials |",
        "|---|---|---|---|---|---|",
        *(
            f"| `{k.name}` | {k.role.value} | {k.jurisdiction} | {k.upstream or '-'} "
            f"| {k.listen or '-'} | {k.dials or '-'} |"
            for k in [*nodes, *operator]
        ),
        "",
        "## 1. Each node makes its key and CSR",
        "",
        f"In its own folder, on its own machine: `sh {layout.SCRIPT}`. It sends back "
        "only `<node>.csr.pem`.",
        "",
        "## 2. The consortium operator signs each CSR",
        "",
        f"With the CSRs back in their folders, in this folder (CA: `{ctx.ca_dir}`):",
        "",
        *_code([shell(k.sign) for k in [*nodes, *operator]]),
        "",
        "and sends each node its `<node>.pem`.",
        "",
        "## 3. Start the nodes, upstream first",
        "",
        "Each in its own folder; a node starts once its upstream listens:",
        "",
        *(
            f"{i}. `{k.name}` (in `{k.folder}/`): `{shell(k.start or ())}`"
            for i, k in enumerate(nodes, start=1)
        ),
        "",
        f"The coordinator's summary (`{order[0]}/{layout.OUTPUT_DIR}/summary.json`) says "
        "how the rounds went.",
        "",
    ]
    return "\n".join(lines)
