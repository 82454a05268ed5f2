// weir console: renders the status and trace the server pushes over server-sent events
// (/api/events). Elements are updated in place, keyed by broker and partition, so a focused
// button keeps its focus while the page refreshes.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { faults: false, status: null, trace: [], lost: 0, seen: 0 };
const TRACE_KEEP = 2000; // events kept in the page
const TRACE_SHOWN = 150; // rows drawn

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function setText(e, text) {
  if (e.textContent !== String(text)) e.textContent = text;
}

// ---- faults ---------------------------------------------------------------------------

async function fault(command) {
  const out = $("fault-result");
  out.className = "";
  out.textContent = `${command}…`;
  try {
    const r = await fetch("/api/fault", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ command }),
    });
    const body = await r.json();
    if (r.ok) {
      out.textContent = body.reply;
    } else {
      out.className = "error";
      out.textContent = `${command}: ${body.error}`;
    }
  } catch (e) {
    out.className = "error";
    out.textContent = `${command}: ${e}`;
  }
}

// ---- brokers --------------------------------------------------------------------------

const BROKER_ACTIONS = [
  ["crash", "Crash", "danger"],
  ["restart", "Restart", ""],
  ["pause", "Pause", "danger"],
  ["resume", "Resume", ""],
  ["expire-session", "Expire session", "danger"],
];

function brokerCard(b) {
  const card = el("li", { class: "card", "data-broker": b.id });
  const title = el("h3", {}, el("span", { class: "name", text: `Broker ${b.id}` }));
  title.append(el("span", { class: "badge state" }), el("span", { class: "badge controller", hidden: "" }));
  card.append(title, el("p", { class: "addr" }), el("p", { class: "load" }));
  if (state.faults) {
    const actions = el("div", { class: "actions", role: "group", "aria-label": `Faults for broker ${b.id}` });
    for (const [cmd, label, cls] of BROKER_ACTIONS) {
      const button = el("button", {
        type: "button",
        class: cls,
        "data-action": cmd,
        "aria-label": `${label} broker ${b.id}`,
        text: label,
      });
      button.addEventListener("click", () => fault(`${cmd} ${b.id}`));
      actions.append(button);
    }
    card.append(actions);
  }
  return card;
}

function renderBrokers(s) {
  const list = $("brokers");
  const keep = new Set();
  for (const b of s.brokers) {
    keep.add(String(b.id));
    let card = list.querySelector(`[data-broker="${b.id}"]`);
    if (!card) {
      card = brokerCard(b);
      list.append(card);
    }
    card.dataset.state = b.state;
    const badge = card.querySelector(".state");
    setText(badge, b.state);
    badge.className = `badge state ${b.state}`;
    const ctl = card.querySelector(".controller");
    const isController = b.id === s.controller;
    ctl.hidden = !isController;
    setText(ctl, isController ? "controller" : "");
    setText(card.querySelector(".addr"), b.addr);
    const leads = s.partitions.filter((p) => p.leader === b.id).map((p) => `${p.topic}-${p.partition}`);
    const hosts = s.partitions.filter((p) => p.replicas.includes(b.id)).length;
    const named = leads.length ? `: ${leads.slice(0, 6).join(", ")}${leads.length > 6 ? ", …" : ""}` : "";
    setText(card.querySelector(".load"), `leader of ${leads.length}${named}; replica of ${hosts} partitions`);
  }
  for (const card of [...list.children]) if (!keep.has(card.dataset.broker)) card.remove();

  setText($("controller"), s.controller >= 0 ? `broker ${s.controller}` : "none");
  setText($("controller-epoch"), s.controller_epoch);
  if (state.faults) renderLinkChoices(s);
}

function renderLinkChoices(s) {
  $("links").hidden = false;
  const ends = [...s.brokers.map((b) => [String(b.id), `broker ${b.id}`]), ["coord", "coordination"]];
  for (const [id, pick] of [["link-from", 0], ["link-to", 1]]) {
    const select = $(id);
    if (select.options.length === ends.length) continue;
    const was = select.value;
    select.replaceChildren(...ends.map(([v, t]) => el("option", { value: v, text: t })));
    select.value = was || ends[Math.min(pick, ends.length - 1)][0];
  }
}

// ---- partitions -----------------------------------------------------------------------

function health(p) {
  if (p.leader < 0) return "offline";
  if (p.isr.length < p.replicas.length) return "under-replicated";
  return "ok";
}

function partitionRow(key) {
  const row = el("tr", { "data-partition": key });
  for (const cls of ["name", "leader", "epoch", "replicas", "isr", "health", "log-start", "hwm", "leo", "bar-cell"]) {
    row.append(el(cls === "name" ? "th" : "td", cls === "name" ? { class: cls, scope: "row" } : { class: cls }));
  }
  const bar = el("div", { class: "bar", role: "img" }, el("span", { class: "readable" }), el("span", { class: "tail" }));
  row.querySelector(".bar-cell").append(bar);
  return row;
}

function renderPartitions(s) {
  const body = $("partitions").querySelector("tbody");
  const internal = $("show-internal").checked;
  const shown = s.partitions.filter((p) => internal || !p.topic.startsWith("__"));
  const max = Math.max(1, ...shown.map((p) => p.log_end_offset));
  const keep = new Set();
  let previous = null;
  for (const p of shown) {
    const key = `${p.topic}-${p.partition}`;
    keep.add(key);
    let row = body.querySelector(`tr[data-partition="${CSS.escape(key)}"]`);
    if (!row) row = partitionRow(key);
    // Keep the rows in the status's order.
    const want = previous ? previous.nextSibling : body.firstChild;
    if (row !== want) body.insertBefore(row, want);
    previous = row;
    const h = health(p);
    row.className = h;
    row.dataset.topic = p.topic;
    row.dataset.index = p.partition;
    setText(row.querySelector(".name"), key);
    setText(row.querySelector(".leader"), p.leader >= 0 ? p.leader : "none");
    setText(row.querySelector(".epoch"), p.leader_epoch);
    setText(row.querySelector(".replicas"), p.replicas.join(", "));
    setText(row.querySelector(".isr"), p.isr.join(", "));
    const badge = row.querySelector(".health");
    if (badge.firstChild?.textContent !== h) badge.replaceChildren(el("span", { class: `badge ${h}`, text: h }));
    const known = (v) => (v >= 0 ? v : "?");
    setText(row.querySelector(".log-start"), known(p.log_start_offset));
    setText(row.querySelector(".hwm"), known(p.high_watermark));
    setText(row.querySelector(".leo"), known(p.log_end_offset));
    const bar = row.querySelector(".bar");
    const pct = (v) => `${(100 * Math.max(0, v)) / max}%`;
    const start = Math.max(0, p.log_start_offset), hwm = Math.max(start, p.high_watermark), leo = Math.max(hwm, p.log_end_offset);
    Object.assign(bar.querySelector(".readable").style, { left: pct(start), width: pct(hwm - start) });
    Object.assign(bar.querySelector(".tail").style, { left: pct(hwm), width: pct(leo - hwm) });
    bar.setAttribute("aria-label", `${key}: log start ${known(p.log_start_offset)}, high-water mark ${known(p.high_watermark)}, log end ${known(p.log_end_offset)}; ${Math.max(0, leo - hwm)} records not yet replicated`);
  }
  for (const row of [...body.children]) if (!keep.has(row.dataset.partition)) row.remove();
  $("no-partitions").hidden = shown.length > 0;
}

// ---- groups ---------------------------------------------------------------------------

function renderGroups(s) {
  const box = $("groups");
  const groups = s.groups || [];
  if (groups.length === 0) {
    box.replaceChildren(el("p", { text: "No consumer groups." }));
    return;
  }
  box.replaceChildren(
    ...groups.map((g) => {
      const section = el("div", { class: "group", "data-group": g.group_id });
      section.append(
        el("h3", {},
          el("span", { text: g.group_id }),
          el("span", { class: `badge ${g.state === "Stable" ? "ok" : "paused"}`, text: g.state }),
          el("small", { text: `generation ${g.generation}${g.protocol ? `, ${g.protocol}` : ""}, coordinator broker ${g.coordinator}` })),
      );
      const members = el("table", {},
        el("caption", { class: "visually-hidden", text: `Members of ${g.group_id}` }),
        el("thead", {}, el("tr", {}, ...["Member", "Client", "Host", "Assignment"].map((t) => el("th", { scope: "col", text: t })))),
        el("tbody", {}, ...g.members.map((m) => el("tr", {},
          el("td", { text: m.member_id }), el("td", { text: m.client_id }), el("td", { text: m.client_host }),
          el("td", { class: "assignment", text: m.assignment.join(", ") || "(rebalancing)" })))));
      const offsets = el("table", {},
        el("caption", { class: "visually-hidden", text: `Committed offsets of ${g.group_id}` }),
        el("thead", {}, el("tr", {}, ...["Partition", "Committed", "High-water mark", "Lag"].map((t) => el("th", { scope: "col", text: t })))),
        el("tbody", {}, ...g.offsets.map((o) => el("tr", {},
          el("td", { text: `${o.topic}-${o.partition}` }), el("td", { text: o.committed }),
          el("td", { text: o.high_watermark >= 0 ? o.high_watermark : "?" }),
          el("td", { class: "lag", text: o.lag ?? "?" })))));
      if (g.members.length) section.append(members);
      if (g.offsets.length) section.append(offsets);
      return section;
    }),
  );
}

// ---- trace: a sequence diagram of the most recent messages ------------------------------

function actorOrder(a) {
  if (/^b\d+$/.test(a)) return [0, Number(a.slice(1))];
  if (a === "coord") return [1, 0];
  if (a === "console") return [3, 0];
  return [2, a];
}

function traceFilter() {
  const topic = $("filter-topic").value.trim();
  const partition = $("filter-partition").value.trim();
  const actor = $("filter-actor").value.trim();
  const hideFetch = $("hide-fetch").checked;
  return (e) => {
    if (e.cat === "meta") return false;
    if (hideFetch && /Fetch$/.test(e.kind)) return false;
    if (actor && !e.from.includes(actor) && !e.to.includes(actor)) return false;
    if (topic) {
      const names = e.partitions || [];
      const inTopic = e.topic === topic || names.some((n) => n.startsWith(`${topic}-`));
      if (!inTopic) return false;
      if (partition !== "") {
        const p = Number(partition);
        if (!(e.partition === p || names.includes(`${topic}-${p}`))) return false;
      }
    } else if (partition !== "") {
      const p = Number(partition);
      if (!(e.partition === p || (e.partitions || []).some((n) => n.endsWith(`-${p}`)))) return false;
    }
    return true;
  };
}

function label(e) {
  let t = e.kind;
  if (e.topic !== undefined && e.partition !== undefined) t += ` ${e.topic}-${e.partition}`;
  else if (e.partitions && e.partitions.length) t += ` (${e.partitions.length} partitions)`;
  if (e.leader !== undefined) t += ` leader=${e.leader}`;
  if (e.isr) t += ` isr=[${e.isr}]`;
  if (e.hwm !== undefined) t += ` hwm=${e.hwm}`;
  if (e.path) t += ` ${e.path}`;
  if (e.error) t += ` ${e.error}`;
  return t;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function renderTrace() {
  const box = $("trace");
  const events = state.trace.filter(traceFilter()).slice(-TRACE_SHOWN);
  setText($("trace-stats"), `${state.seen} messages received, ${state.lost} not shown (rate); drawing the last ${events.length} that match`);
  const actors = [...new Set(events.flatMap((e) => [e.from, e.to]))].sort((a, b) => {
    const [x, y] = [actorOrder(a), actorOrder(b)];
    return x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
  });
  const colW = 170, rowH = 24, top = 8;
  const width = Math.max(400, actors.length * colW + 40);
  const height = top + events.length * rowH + 10;
  const x = (a) => 20 + colW / 2 + actors.indexOf(a) * colW;
  const style = () => svg("style", {}, "text{font:12px system-ui,sans-serif;fill:#1a1a1a}.err{fill:#a11a1a}");
  // The actors' names stay in view (sticky) while the messages scroll under them.
  const head = svg("svg", { width, height: 24, class: "head", "aria-hidden": "true" });
  head.append(style());
  for (const a of actors) head.append(svg("text", { x: x(a), y: 17, "text-anchor": "middle", "font-weight": "bold" }, a));
  const root = svg("svg", { width, height, role: "img", "aria-label": `Sequence diagram of ${events.length} messages between ${actors.join(", ")}` });
  root.append(style());
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "arrow", markerWidth: 8, markerHeight: 8, refX: 8, refY: 4, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L8,4 L0,8 z", fill: "#1f4f99" }));
  defs.append(marker);
  root.append(defs);
  for (const a of actors) root.append(svg("line", { x1: x(a), y1: 0, x2: x(a), y2: height, stroke: "#c9c9c2" }));
  events.forEach((e, i) => {
    const y = top + i * rowH + 14;
    const g = svg("g", {});
    g.append(svg("title", {}, JSON.stringify(e)));
    const cls = e.error ? "err" : "";
    if (e.from === e.to) {
      g.append(svg("rect", { x: x(e.from) - 6, y: y - 12, width: 12, height: 16, fill: "#f3c98a", stroke: "#8a4b00" }));
      g.append(svg("text", { x: x(e.from) + 10, y, class: cls }, label(e)));
    } else {
      const [x1, x2] = [x(e.from), x(e.to)];
      const dash = e.reply_to !== undefined ? "4 3" : "";
      g.append(svg("line", { x1, y1: y, x2: x2 + (x2 > x1 ? -2 : 2), y2: y, stroke: "#1f4f99", "stroke-dasharray": dash, "marker-end": "url(#arrow)" }));
      g.append(svg("text", { x: Math.min(x1, x2) + 6, y: y - 4, class: cls }, label(e)));
    }
    root.append(g);
  });
  const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 30;
  box.replaceChildren(head, root);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

// ---- the stream -----------------------------------------------------------------------

function render() {
  if (!state.status || !state.status.brokers) return;
  renderBrokers(state.status);
  renderPartitions(state.status);
  renderGroups(state.status);
}

function connect() {
  const conn = $("connection");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    conn.textContent = "live";
    conn.className = "badge live";
  });
  source.addEventListener("error", () => {
    conn.textContent = "disconnected, retrying";
    conn.className = "badge lost";
  });
  source.addEventListener("status", (m) => {
    state.status = JSON.parse(m.data);
    render();
  });
  source.addEventListener("trace", (m) => {
    const batch = JSON.parse(m.data);
    state.seen += batch.events.length;
    state.lost += batch.lost;
    if ($("trace-paused").checked) return;
    state.trace.push(...batch.events);
    if (state.trace.length > TRACE_KEEP) state.trace.splice(0, state.trace.length - TRACE_KEEP);
    renderTrace();
  });
}

async function start() {
  try {
    const info = await (await fetch("/api/info")).json();
    state.faults = info.faults;
    setText($("source"), info.source);
  } catch (e) {
    setText($("source"), "unknown");
  }
  setText($("mode"), state.faults ? "fault console enabled" : "read-only (start weir with --ui-faults for the fault buttons)");
  if (state.faults) {
    const link = () => `${$("link-from").value} ${$("link-to").value}`;
    $("link-cut").addEventListener("click", () => fault(`cut ${link()}`));
    $("link-heal").addEventListener("click", () => fault(`heal ${link()}`));
    $("heal-all").addEventListener("click", () => fault("heal"));
  }
  $("show-internal").addEventListener("change", render);
  for (const id of ["filter-topic", "filter-partition", "filter-actor", "hide-fetch"]) {
    $(id).addEventListener("input", renderTrace);
  }
  $("trace-clear").addEventListener("click", () => {
    state.trace = [];
    renderTrace();
  });
  connect();
}

start();
