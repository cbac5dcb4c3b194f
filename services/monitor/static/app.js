// The monitor's dashboard: one WebSocket to the server that served this page (docs/monitor.md).
// The token is sent as the first message and kept in this tab's sessionStorage only; the state
// is the server's snapshot plus its deltas, resumed by sequence number after a reconnect.
// Everything shown is set as text (never as HTML), so nothing in the data can run as code.
"use strict";

const $ = (id) => document.getElementById(id);
const TZ = "Asia/Shanghai"; // exchange time
const S = {
  token: sessionStorage.getItem("hft-token"),
  ws: null,
  hello: null,
  account: null,
  accounts: {}, // account -> {trading_day, seq, topics: {topic: {key: value}}}
  curves: {}, // account -> {day, t: [], prices: {instrument: []}, equity: {agent: []}}
  marks: {}, // account -> the last marks
  health: null,
  alerts: {}, // id -> the server's active alert (docs/monitor.md, "Alerts")
  backoff: 500,
  commands: 0,
  drawn: false,
};

// -- connection --------------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/");
  S.ws = ws;
  S.hello = null;
  setConn("connecting");
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: S.token }));
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (S.ws !== ws) return;
    S.ws = null;
    if (event.code === 1008) { // authentication failed: the token is wrong or was revoked
      signOut("The monitor refused this token.");
      return;
    }
    setConn("reconnecting");
    setTimeout(() => { if (S.token && !S.ws) connect(); }, S.backoff);
    S.backoff = Math.min(S.backoff * 2, 10000);
  };
}

function send(message) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) {
    S.ws.send(JSON.stringify(message));
    return true;
  }
  toast("Not connected: the command was not sent.", false);
  return false;
}

function receive(msg) {
  switch (msg.type) {
    case "hello": return hello(msg);
    case "snapshot": {
      const old = S.accounts[msg.account];
      if (old && old.trading_day !== msg.trading_day) delete S.curves[msg.account];
      S.accounts[msg.account] = { trading_day: msg.trading_day, seq: msg.seq, topics: msg.topics };
      break;
    }
    case "deltas": {
      const st = S.accounts[msg.account];
      for (const d of msg.deltas) {
        if (!st || st.trading_day !== d.trading_day || d.seq !== st.seq + 1) {
          // cannot happen with this server; if it did, start over from a fresh snapshot
          delete S.accounts[msg.account];
          if (S.ws) S.ws.close();
          return;
        }
        st.seq = d.seq;
        const values = st.topics[d.topic] || (st.topics[d.topic] = {});
        if (d.value === null) delete values[d.key]; else values[d.key] = d.value;
      }
      break;
    }
    case "history": {
      const c = newCurves(msg.trading_day);
      for (const [t, prices, equity] of msg.samples) addSample(c, t, prices, equity);
      S.curves[msg.account] = c;
      break;
    }
    case "marks": {
      S.marks[msg.account] = msg;
      const day = S.accounts[msg.account] ? S.accounts[msg.account].trading_day : 0;
      let c = S.curves[msg.account];
      if (!c || c.day !== day) c = S.curves[msg.account] = newCurves(day);
      if (!c.t.length || msg.time_ns / 1e9 > c.t[c.t.length - 1]) {
        addSample(c, msg.time_ns, msg.prices, msg.equity);
      }
      break;
    }
    case "health": S.health = msg; break;
    case "alert":
      if (msg.cleared_ns) delete S.alerts[msg.id]; else S.alerts[msg.id] = msg;
      break;
    case "reply": toast((msg.ok ? "Engine: " : "Engine refused: ") + msg.text, msg.ok); break;
    case "error": toast("Monitor: " + msg.text, false); break;
  }
  schedule();
}

function hello(msg) {
  S.hello = msg;
  S.backoff = 500;
  S.alerts = {}; // the server sends the active ones again after the snapshots
  sessionStorage.setItem("hft-token", S.token);
  $("login").hidden = true;
  $("app").hidden = false;
  document.body.classList.toggle("admin", msg.role === "admin");
  const mode = $("mode");
  mode.textContent = msg.mode.toUpperCase();
  mode.className = "mode " + msg.mode;
  document.title = `${msg.mode.toUpperCase()} · hft monitor`;
  $("who").textContent = msg.role;
  const select = $("account");
  select.replaceChildren(...msg.accounts.map((a) => new Option(a, a)));
  if (!msg.accounts.includes(S.account)) S.account = msg.accounts[0] || null;
  select.value = S.account;
  for (const a of Object.keys(S.accounts)) if (!msg.accounts.includes(a)) delete S.accounts[a];
  const since = {};
  for (const [a, st] of Object.entries(S.accounts)) since[a] = [st.trading_day, st.seq];
  S.ws.send(JSON.stringify({ type: "subscribe", since }));
  setConn("live");
}

function setConn(state) {
  const el = $("conn");
  el.className = "conn " + state;
  el.textContent = state;
}

function signOut(why) {
  S.token = null;
  sessionStorage.removeItem("hft-token");
  if (S.ws) { const ws = S.ws; S.ws = null; ws.close(); }
  S.accounts = {}; S.curves = {}; S.marks = {};
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = why || "";
  $("token").value = "";
  $("token").focus();
}

// -- commands ----------------------------------------------------------------------------------

function command(action, scope, target) {
  S.commands += 1;
  const id = `web-${Date.now().toString(36)}-${S.commands}`;
  if (send({ type: "command", account: S.account, action, scope, target, command_id: id })) {
    toast(`Sent ${action.replace("_", " ")}${target ? " " + target : ""}…`, true);
  }
}

function confirmThen(text, label, then) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = label;
  dialog.onclose = () => { if (dialog.returnValue === "ok") then(); };
  dialog.returnValue = "";
  dialog.showModal();
}

function toast(text, ok) {
  const div = document.createElement("div");
  div.textContent = text;
  if (!ok) div.className = "failed";
  $("toast").append(div);
  setTimeout(() => div.remove(), 8000);
}

// -- rendering ---------------------------------------------------------------------------------

let pending = false;
function schedule() {
  if (!pending) { pending = true; requestAnimationFrame(render); }
}

const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const price = new Intl.NumberFormat("en-US", { maximumFractionDigits: 4, useGrouping: false });
const clock = new Intl.DateTimeFormat("en-GB", { timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const time = (ns) => (ns ? clock.format(new Date(ns / 1e6)) : "");
const signed = (x) => (x > 0 ? "pos" : x < 0 ? "neg" : "");

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell);
    else if (cell && typeof cell === "object") {
      td.textContent = cell.text;
      if (cell.cls) td.className = cell.cls;
    } else td.textContent = cell;
    tr.append(td);
  }
  return tr;
}

function fill(id, rows) {
  $(id).tBodies[0].replaceChildren(...rows);
}

function render() {
  pending = false;
  const st = S.accounts[S.account];
  if (!st) return;
  const t = st.topics;
  const values = (topic) => Object.values(t[topic] || {});
  const day = (t.day || {}).day;
  $("day").textContent = day ? `trading day ${day.trading_day} · ${day.status}` : "";
  const marks = S.marks[S.account] || { unrealised: {}, equity: {}, prices: {} };

  // summary: one card per agent
  const agents = values("agents");
  const pnl = t.pnl || {};
  const portfolioOf = {}; // the strategy tree: agent -> its portfolio
  values("portfolios").forEach((p) => p.agents.forEach((a) => { portfolioOf[a] = p.name; }));
  $("summary").replaceChildren(...agents.map((a) => {
    const p = pnl[a.agent] || { realised: 0, fees: 0, cash: 0 };
    const unrealised = marks.unrealised[a.agent] || 0;
    const equity = marks.equity[a.agent] !== undefined ? marks.equity[a.agent] : p.cash + unrealised;
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.agent = a.agent;
    const h = document.createElement("h3");
    const under = portfolioOf[a.agent] ? ` · ${portfolioOf[a.agent]}` : "";
    h.textContent = `${a.agent}${under}${a.running ? "" : " · stopped"}${a.error ? " · " + a.error : ""}`;
    const big = document.createElement("div");
    big.className = "big";
    big.textContent = money.format(equity);
    const line = (label, x) => {
      const r = document.createElement("div");
      r.className = "row";
      const b = document.createElement("b");
      b.textContent = money.format(x);
      b.className = signed(x);
      r.append(label, b);
      return r;
    };
    card.append(h, big, line("realised", p.realised), line("unrealised", unrealised),
      line("fees", -p.fees));
    return card;
  }));

  fill("positions", values("positions").map((p) => row([
    p.agent, p.instrument,
    { text: `${p.long_today + p.long_yesterday} (${p.long_today}/${p.long_yesterday})`, cls: "n" },
    { text: p.long_average ? price.format(p.long_average) : "", cls: "n" },
    { text: `${p.short_today + p.short_yesterday} (${p.short_today}/${p.short_yesterday})`, cls: "n" },
    { text: p.short_average ? price.format(p.short_average) : "", cls: "n" },
  ])));

  const admin = S.hello && S.hello.role === "admin";
  fill("orders", values("orders").sort((a, b) => b.requested_ns - a.requested_ns).map((o) => {
    let cancel = "";
    if (admin) {
      cancel = document.createElement("button");
      cancel.className = "small";
      cancel.textContent = "Cancel";
      cancel.dataset.order = o.order_id;
      cancel.onclick = () => command("cancel_order", "account", o.order_id);
    }
    return row([o.order_id, o.agent, o.instrument,
      { text: `${o.direction} ${o.offset}`, cls: o.direction },
      { text: price.format(o.price), cls: "n" }, { text: `${o.filled}/${o.volume}`, cls: "n" },
      o.state, cancel]);
  }));

  fill("conditionals", values("conditionals").sort((a, b) => b.placed_ns - a.placed_ns).map((c) =>
    row([c.cond_id, c.agent, `${c.kind} ${c.instrument}`, { text: c.direction, cls: c.direction },
      { text: c.trigger ? price.format(c.trigger) : "", cls: "n" }, { text: c.volume, cls: "n" },
      { text: c.text ? `${c.state} · ${c.text}` : c.state, cls: "wrap" }])));

  const trades = values("trades").sort((a, b) => b.time_ns - a.time_ns);
  $("trade-count").textContent = trades.length ? `${trades.length} today` : "";
  fill("trades", trades.slice(0, 300).map((x) => row([
    time(x.time_ns), x.agent, x.instrument, { text: `${x.direction} ${x.offset}`, cls: x.direction },
    { text: price.format(x.price), cls: "n" }, { text: x.volume, cls: "n" },
    { text: money.format(x.fee), cls: "n" }, { text: money.format(x.realised), cls: "n " + signed(x.realised) },
  ])));

  const risk = values("risk").filter((r) => r.state !== "active");
  fill("risk", risk.map((r) => row([`${r.scope}${r.target ? " " + r.target : ""}`,
    { text: r.state, cls: "state-" + r.state }, { text: r.reason, cls: "wrap" }, time(r.since_ns)])));
  const refusals = values("refusals").sort((a, b) => b.time_ns - a.time_ns);
  fill("refusals", refusals.slice(0, 50).map((r) => row([time(r.time_ns), r.agent, r.code,
    { text: r.text, cls: "wrap" }])));

  renderHealth();
  renderAlerts();
  renderCharts(trades);
}

function renderHealth() {
  const h = S.health;
  const dl = $("health");
  if (!h) { dl.replaceChildren(); return; }
  const items = [];
  const add = (label, text, good) => {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = text;
    dd.className = good ? "ok" : "bad";
    items.push(dt, dd);
  };
  for (const [account, e] of Object.entries(h.engines)) {
    add(`engine ${account}`, `${e.state}${e.trading_day ? " · day " + e.trading_day : ""} · ${e.frames} frames`,
      e.state === "open" || e.state === "closed");
    const f = e.status;
    if (f) {
      add(`${account} feed`, `${f.feed} · ${f.ticks} ticks · ${f.orders} orders · behind ${f.behind_ticks} ticks, ${f.behind_s} s`,
        f.feed === "live" && f.behind_s < 1);
      const l = f.tick_to_order;
      add(`${account} tick→order`, l.samples ? `p50 ${l.p50_us} µs · p99 ${l.p99_us} µs · max ${l.max_us} µs (${l.count})` : "no orders yet", true);
    }
  }
  add("market data", h.market.state, h.market.state === "open");
  const md = h.market.status;
  if (md) {
    const drops = Object.entries(md.drops);
    const dropped = drops.reduce((n, [, c]) => n + c, 0);
    add("md ticks", `${md.ticks_per_s}/s · ${md.kept} kept · ${md.instruments} instrument${md.instruments === 1 ? "" : "s"} · lag ${md.lag_ms_median < 0 ? "–" : md.lag_ms_median + " ms"}`,
      !md.archive_error);
    add("md drops", dropped ? drops.map(([r, c]) => `${r} ${c}`).join(" · ") : "none", true);
  }
  add("connection", S.ws ? "live" : "reconnecting", !!S.ws);
  add("last update", time(h.time_ns), true);
  dl.replaceChildren(...items);
}

function renderAlerts() {
  // the server's alerts (raised and cleared by the monitor for every client alike), and this
  // page's own: a lost connection
  const alerts = Object.values(S.alerts)
    .sort((a, b) => (a.severity === b.severity ? a.raised_ns - b.raised_ns : a.severity === "critical" ? -1 : 1))
    .map((a) => [`${time(a.raised_ns)} ${a.text}`, a.severity === "critical"]);
  if (!S.ws) alerts.unshift(["The connection to the monitor is lost; reconnecting.", true]);
  $("alerts").replaceChildren(...alerts.map(([text, bad]) => {
    const div = document.createElement("div");
    div.className = "alert" + (bad ? " bad" : "");
    div.textContent = text;
    return div;
  }));
}

// -- charts ------------------------------------------------------------------------------------

function newCurves(day) { return { day, t: [], prices: {}, equity: {} }; }

function addSample(c, timeNs, prices, equity) {
  const n = c.t.length;
  c.t.push(timeNs / 1e9);
  for (const [series, values] of [[c.prices, prices], [c.equity, equity]]) {
    for (const [k, v] of Object.entries(values)) {
      if (!series[k]) series[k] = new Array(n).fill(null);
    }
    for (const [k, arr] of Object.entries(series)) arr.push(k in values ? values[k] : null);
  }
}

const charts = {};
const tzDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), TZ);
const hhmm = uPlot.fmtDate("{HH}:{mm}");

function chart(id, series, data) {
  const el = $(id);
  const key = series.map((s) => s.label).join("|");
  let c = charts[id];
  if (c && c.key !== key) { c.plot.destroy(); c = null; }
  if (!c) {
    const opts = {
      width: el.clientWidth || 600, height: 260, tzDate,
      scales: { x: { time: true } },
      axes: [{ stroke: "#8592a3", grid: { stroke: "#27303b" },
        values: (u, splits) => splits.map((v) => hhmm(tzDate(v))) },
        { stroke: "#8592a3", grid: { stroke: "#27303b" }, size: 84 }],
      legend: { live: true },
      series: [{}, ...series],
    };
    c = charts[id] = { key, plot: new uPlot(opts, data, el) };
  } else c.plot.setData(data);
  const width = el.clientWidth;
  if (width && Math.abs(width - c.plot.width) > 2) c.plot.setSize({ width, height: 260 });
}

const PALETTE = ["#4c8dff", "#d9a21b", "#b46bff", "#34c3c3", "#e57b4b", "#9fd356"];

function renderCharts(trades) {
  const c = S.curves[S.account];
  const select = $("instrument");
  const instruments = [...new Set([...Object.keys(c ? c.prices : {}), ...trades.map((x) => x.instrument)])].sort();
  if (select.options.length !== instruments.length) {
    const keep = select.value;
    select.replaceChildren(...instruments.map((i) => new Option(i, i)));
    if (instruments.includes(keep)) select.value = keep;
  }
  const instrument = select.value;
  if (instrument) {
    // prices and fills on one time axis: the samples' times and the fills' times, merged
    const points = [];
    if (c && c.prices[instrument]) c.prices[instrument].forEach((p, i) => { if (p !== null) points.push([c.t[i], p, null, null]); });
    for (const x of trades) {
      if (x.instrument !== instrument) continue;
      points.push([x.time_ns / 1e9, null, x.direction === "buy" ? x.price : null, x.direction === "sell" ? x.price : null]);
    }
    points.sort((a, b) => a[0] - b[0]);
    const data = [0, 1, 2, 3].map((k) => points.map((p) => p[k]));
    chart("price-chart", [
      { label: instrument, stroke: "#d8dee6", width: 1.25, spanGaps: true, points: { show: false } },
      { label: "buy fills", stroke: "#e5534b", paths: () => null, points: { show: true, size: 8, fill: "#e5534b" } },
      { label: "sell fills", stroke: "#2ea76b", paths: () => null, points: { show: true, size: 8, fill: "#2ea76b" } },
    ], data);
  }
  if (c && c.t.length) {
    const agents = Object.keys(c.equity).sort();
    chart("equity-chart", agents.map((a, i) => ({ label: a, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true })),
      [c.t, ...agents.map((a) => c.equity[a])]);
  }
}

// -- start -------------------------------------------------------------------------------------

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  S.token = $("token").value.trim();
  $("login-error").textContent = "";
  if (S.token) connect();
});
$("logout").onclick = () => signOut("");
$("account").onchange = (event) => { S.account = event.target.value; schedule(); };
$("instrument").onchange = () => schedule();
$("halt").onclick = () => confirmThen(
  `Halt account ${S.account}? Every agent stops sending new orders until it is resumed; working orders stay.`,
  "Halt", () => command("halt", "account", ""));
$("resume").onclick = () => command("resume", "account", "");
window.addEventListener("resize", schedule);

if (S.token) connect(); else { $("login").hidden = false; $("token").focus(); }
