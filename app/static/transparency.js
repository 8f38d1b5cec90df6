// The operator page's transparency panel (issue 23): the log's head, the round's leaves, and for
// a drawn random round the proof that its number follows, recomputed here, in the browser, from
// the published inputs (docs/transparency.md, "The committed draw"):
//   commitment = SHA-256("lottery/seed/v1\n" ‖ seed)
//   x = SHA-256("lottery/draw/v1\n" ‖ origin ‖ "\n" ‖ u64be(round) ‖ u64be(N) ‖ root_N ‖ seed)
//   B_c = SHA-256(x ‖ u32be(c)), c = 0, 1, ...; the first 16-bit big-endian word w < 60000; w mod 10000
// One global, LotteryProof; operator.js calls LotteryProof.render(state) with every snapshot.
"use strict";

const LotteryProof = (() => {
  const ACCEPT_BELOW = 60000; // the largest multiple of 10000 a 16-bit word holds: no modulo bias
  const NUMBERS = 10000;
  const HASH_SIZE = 32;
  const text = new TextEncoder();
  const byId = (id) => document.getElementById(id);

  // -- bytes ----------------------------------------------------------------------------------

  // Standard, padded, canonical base64 only (as tlog/b64.py): atob alone forgives missing padding.
  function fromBase64(value, size, what) {
    let bytes = null;
    try {
      bytes = Uint8Array.from(atob(value), (ch) => ch.charCodeAt(0));
    } catch {
      bytes = null;
    }
    if (bytes === null || toBase64(bytes) !== value || bytes.length !== size) {
      throw new Error(`${what} is not ${size} bytes of base64: ${JSON.stringify(value)}`);
    }
    return bytes;
  }

  function toBase64(bytes) {
    return btoa(String.fromCharCode(...bytes));
  }

  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function u64be(n) {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, BigInt(n));
    return out;
  }

  function u32be(n) {
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, n);
    return out;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  // -- the draw -------------------------------------------------------------------------------

  async function seedCommitment(seed) {
    return sha256(concat(text.encode("lottery/seed/v1\n"), seed));
  }

  // {x, word, block, index, rejected, number}: the derivation, each step kept to show it.
  async function derive(origin, round, size, root, seed) {
    const head = text.encode("lottery/draw/v1\n" + origin + "\n");
    const x = await sha256(concat(head, u64be(round), u64be(size), root, seed));
    let rejected = 0;
    for (let c = 0; ; c++) {
      const b = await sha256(concat(x, u32be(c)));
      for (let i = 0; i < HASH_SIZE / 2; i++) {
        const w = (b[2 * i] << 8) | b[2 * i + 1];
        if (w < ACCEPT_BELOW) return { x, word: w, block: c, index: i, rejected, number: w % NUMBERS };
        rejected++;
      }
    }
  }

  // The derivation from base64 inputs, hex out (for tests: the golden draws of tests/unit/test_tlog_draw.py).
  async function deriveDraw(origin, round, size, rootBase64, seedBase64) {
    const d = await derive(
      origin,
      round,
      size,
      fromBase64(rootBase64, HASH_SIZE, "the root"),
      fromBase64(seedBase64, HASH_SIZE, "the seed"),
    );
    return { x: toHex(d.x), word: d.word, block: d.block, index: d.index, number: d.number };
  }

  // Every step of the proof, {ok, text}; the verdict is the first that fails, if any.
  async function prove(state, head) {
    const draw = state.draw;
    const steps = [];
    const step = (ok, line) => steps.push({ ok, text: line });
    let seed;
    let root;
    try {
      seed = fromBase64(draw.seed, HASH_SIZE, "the seed");
      root = fromBase64(draw.root, HASH_SIZE, "the draw's root");
    } catch (error) {
      step(false, error.message);
      return steps;
    }
    const commitment = toBase64(await seedCommitment(seed));
    step(
      commitment === state.seed_commitment,
      `SHA-256("lottery/seed/v1\\n" ‖ seed) = ${commitment}` +
        (commitment === state.seed_commitment
          ? ", the commitment published when the round opened"
          : `, but the round opened with the commitment ${state.seed_commitment}`),
    );
    const closed = state.log ? state.log.closed : null;
    step(
      closed !== null && draw.size === closed + 1,
      closed !== null && draw.size === closed + 1
        ? `The tree of N = ${draw.size} leaves ends with the round's close leaf (index ${closed})`
        : `The draw's tree of ${draw.size} leaves does not end with the round's close leaf (${closed === null ? "none" : "index " + closed})`,
    );
    const d = await derive(head.origin, state.round, draw.size, root, seed);
    step(
      true,
      `x = SHA-256("lottery/draw/v1\\n" ‖ "${head.origin}" ‖ "\\n" ‖ u64be(${state.round}) ‖ u64be(${draw.size}) ‖ root_N ‖ seed) = ${toHex(d.x)}`,
    );
    step(
      true,
      `B${d.block} = SHA-256(x ‖ u32be(${d.block})), word ${d.index}: w = ${d.word}, the first below ${ACCEPT_BELOW}` +
        (d.rejected ? ` (${d.rejected} rejected before it)` : ""),
    );
    const published = [draw.winning_number, state.winning_number];
    const same = published.every((n) => n === d.number);
    step(
      same,
      `w mod ${NUMBERS} = ${d.number}` +
        (same ? ": the published winning number" : `, but the published winning number is ${published.find((n) => n !== d.number)}`),
    );
    return steps;
  }

  // -- the panel ------------------------------------------------------------------------------

  let proofFor = null; // the inputs of the proof shown (or being computed)

  function facts(rows) {
    const list = byId("tlog-facts");
    list.replaceChildren();
    for (const [id, label, value, code] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      const inner = code ? document.createElement("code") : dd;
      inner.textContent = value;
      if (code) dd.append(inner);
      dd.dataset.testid = id;
      list.append(dt, dd);
    }
  }

  function render(state) {
    const head = state.transparency || null;
    byId("tlog-none").hidden = head !== null;
    byId("tlog").hidden = head === null;
    if (head === null) return;
    const round = state.round;
    const checkpoint = head.checkpoint;
    const draw = state.draw || null;
    const rows = [
      ["tlog-origin", "Log (origin)", head.origin, true],
      ["tlog-vkey", "Verifier key (GET /log/vkey)", head.vkey, true],
      ["tlog-checkpoint-size", "Latest signed checkpoint: size", checkpoint ? String(checkpoint.size) : "none yet"],
      ["tlog-checkpoint-root", "its root", checkpoint ? checkpoint.root : "—", true],
      ["tlog-opened", `Round ${round} opened: leaf`, state.log && state.log.opened !== null ? String(state.log.opened) : "— (opened before the log)"],
    ];
    if (state.random) rows.push(["tlog-commitment", "Seed commitment (at the opening)", state.seed_commitment || "—", true]);
    if (draw) {
      if (state.random) rows.push(["tlog-seed", "Seed (published at the draw)", draw.seed || "—", true]);
      rows.push(["tlog-draw-size", "The draw: tree size N", String(draw.size)]);
      rows.push(["tlog-draw-root", "its root, root_N", draw.root, true]);
      rows.push(["tlog-number", "Winning number", String(draw.winning_number)]);
    }
    facts(rows);
    byId("tlog-note").textContent = !state.random
      ? `The winning number ${state.winning_number} was fixed when the round opened: only this round's bets, not its number, are provable.`
      : draw
        ? "The number drawn at random: the proof below is recomputed by this browser from the published values."
        : "The number is drawn at random at the draw, from this commitment's seed (secret until then) and the log's root with the round's close leaf: the page then checks it.";
    byId("tlog-command").textContent =
      `python -m client verify --agency A --file F --round ${round} --log-key '${head.vkey}'`;
    showProof(state, head, state.random && draw !== null && draw.seed !== null);
  }

  function showProof(state, head, provable) {
    const box = byId("proof");
    box.hidden = !provable;
    if (!provable) {
      proofFor = null;
      return;
    }
    const key = JSON.stringify([state.round, state.winning_number, state.seed_commitment, state.log, state.draw, head.origin]);
    if (key === proofFor) return; // the same inputs: the proof shown stands
    proofFor = key;
    const verdict = byId("proof-verdict");
    const list = byId("proof-steps");
    list.replaceChildren();
    if (!(window.crypto && crypto.subtle)) {
      verdict.className = "warn";
      verdict.textContent =
        "Not checked here: this browser computes SHA-256 (crypto.subtle) only on a secure page (https:// or this machine). The command below checks it.";
      return;
    }
    verdict.className = "";
    verdict.textContent = "checking…";
    prove(state, head).then(
      (steps) => {
        if (key !== proofFor) return; // newer inputs came meanwhile
        const failed = steps.find((s) => !s.ok);
        verdict.className = failed ? "bad" : "ok";
        verdict.textContent = failed
          ? `mismatch: ${failed.text}`
          : `checked: the winning number ${state.draw.winning_number} follows from the seed committed when the round opened and the log's root at the draw.`;
        for (const s of steps) {
          const item = document.createElement("li");
          item.className = s.ok ? "ok" : "bad";
          item.textContent = s.text;
          list.append(item);
        }
      },
      (error) => {
        if (key !== proofFor) return;
        verdict.className = "bad";
        verdict.textContent = `mismatch: ${error.message}`;
      },
    );
  }

  return { render, deriveDraw };
})();
