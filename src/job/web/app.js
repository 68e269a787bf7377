// The block viewer: one panel per external-label set, one timeline row per resolution
// and compaction level, blocks placed by time; overlapping blocks in a row are stacked
// and outlined. Data: GET /api/v1/blocks (Thanos's shape); marks: POST /api/v1/blocks/mark.
"use strict";

const RES = { 0: "raw", 300000: "5m", 3600000: "1h" };
const LEVEL_COLORS = ["#93c5fd", "#60a5fa", "#3b82f6", "#2563eb", "#1d4ed8", "#1e3a8a"];
let state = { blocks: [], markers: {}, label: "", selected: null, find: "" };

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

function fmtTime(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace(/:\d\d\.\d+Z$/, " UTC");
}

function fmtDuration(ms) {
  const units = [["d", 86400000], ["h", 3600000], ["m", 60000], ["s", 1000]];
  let out = "";
  for (const [u, n] of units) {
    if (ms >= n) {
      out += Math.floor(ms / n) + u;
      ms %= n;
    }
  }
  return out || "0s";
}

function fmtBytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function fmtNum(n) {
  return (n || 0).toLocaleString("en-US");
}

const labelsOf = (b) => (b.thanos && b.thanos.labels) || {};
const resOf = (b) => (b.thanos && b.thanos.downsample && b.thanos.downsample.resolution) || 0;
const sizeOf = (b) => ((b.thanos && b.thanos.files) || []).reduce((s, f) => s + (f.size_bytes || 0), 0);

function labelKey(labels) {
  return "{" + Object.keys(labels).sort().map((k) => `${k}="${labels[k]}"`).join(", ") + "}";
}

async function load() {
  const loaded = $("loaded").checked;
  try {
    const r = await fetch("/api/v1/blocks" + (loaded ? "?view=loaded" : ""));
    const j = await r.json();
    if (j.status !== "success") throw new Error(j.error || "request failed");
    state.blocks = j.data.blocks || [];
    state.markers = j.data.markers || {};
    state.label = j.data.label || "";
    const n = state.blocks.length;
    const bytes = state.blocks.reduce((s, b) => s + sizeOf(b), 0);
    const summary = $("summary");
    summary.textContent = `${fmtNum(n)} blocks · ${fmtBytes(bytes)} · refreshed ${j.data.refreshedAt || "never"}`;
    if (j.data.err) summary.append(" · ", el("span", "err", "last refresh failed: " + j.data.err));
    render();
  } catch (e) {
    $("summary").replaceChildren(el("span", "err", "cannot load blocks: " + e.message));
  }
}

// Lanes for the blocks of one row (sorted by minTime); marks the overlapping ones.
function layoutRow(blocks) {
  blocks.sort((a, b) => a.minTime - b.minTime || a.maxTime - b.maxTime);
  const laneEnds = [];
  let maxEnd = -Infinity;
  let prev = null;
  for (const b of blocks) {
    b._overlap = false;
    if (prev && b.minTime < maxEnd) {
      b._overlap = true;
      for (const o of blocks) {
        if (o !== b && o.minTime < b.maxTime && b.minTime < o.maxTime) o._overlap = true;
      }
    }
    let lane = laneEnds.findIndex((end) => end <= b.minTime);
    if (lane < 0) {
      lane = laneEnds.length;
      laneEnds.push(0);
    }
    laneEnds[lane] = b.maxTime;
    b._lane = lane;
    maxEnd = Math.max(maxEnd, b.maxTime);
    prev = b;
  }
  return Math.max(1, laneEnds.length);
}

function ticks(min, max) {
  const span = max - min;
  const steps = [3600000, 2 * 3600000, 6 * 3600000, 12 * 3600000, 86400000, 2 * 86400000, 7 * 86400000, 14 * 86400000, 30 * 86400000, 90 * 86400000, 365 * 86400000];
  const step = steps.find((s) => span / s <= 8) || steps[steps.length - 1];
  const out = [];
  for (let t = Math.ceil(min / step) * step; t <= max; t += step) out.push([t, step]);
  return out;
}

function tickLabel(t, step) {
  const iso = new Date(t).toISOString();
  return step >= 86400000 ? iso.slice(0, 10) : iso.slice(5, 16).replace("T", " ");
}

function matches(b) {
  if (!state.find) return true;
  const f = state.find.toLowerCase();
  if (b.ulid.toLowerCase().includes(f)) return true;
  return Object.values(labelsOf(b)).some((v) => String(v).toLowerCase().includes(f));
}

const isDeleted = (b) => (state.markers[b.ulid] || []).includes("deletion-mark.json");

function render() {
  const panels = $("panels");
  panels.replaceChildren();
  const all = state.blocks;
  const hide = $("hidedeleted").checked;
  const shown = hide ? all.filter((b) => !isDeleted(b)) : all;
  for (const b of all) b._overlap = false;
  if (!shown.length) {
    panels.append(el("div", "empty", "No blocks in the bucket."));
    return;
  }
  const min = Math.min(...shown.map((b) => b.minTime));
  const max = Math.max(...shown.map((b) => b.maxTime));
  const pos = (t) => ((t - min) / (max - min || 1)) * 100;
  const groups = new Map();
  for (const b of shown) {
    const k = labelKey(labelsOf(b));
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(b);
  }
  const keys = [...groups.keys()].sort();
  for (const k of keys) {
    const blocks = groups.get(k);
    const labels = labelsOf(blocks[0]);
    const panel = el("section", "panel");
    const h = el("h3");
    const t = el("span");
    if (state.label && labels[state.label] !== undefined) {
      t.append(el("b", "", `${state.label}=${labels[state.label]} `));
    }
    t.append(el("code", "", k));
    h.append(t);
    const bytes = blocks.reduce((s, b) => s + sizeOf(b), 0);
    const overlapping = [];
    h.append(el("small", "", `${blocks.length} blocks · ${fmtBytes(bytes)}`));
    panel.append(h);
    const axis = el("div", "axis");
    axis.append(el("div", "name", "resolution · level"));
    const at = el("div", "track");
    for (const [t, step] of ticks(min, max)) {
      // Labels too close to the edges would spill out of the track.
      if (pos(t) < 4 || pos(t) > 95) continue;
      const tk = el("span", "tick", tickLabel(t, step));
      tk.style.left = pos(t) + "%";
      at.append(tk);
    }
    axis.append(at);
    panel.append(axis);
    const rows = new Map();
    for (const b of blocks) {
      const rk = resOf(b) * 1000 + (b.compaction.level || 0);
      if (!rows.has(rk)) rows.set(rk, []);
      rows.get(rk).push(b);
    }
    for (const rk of [...rows.keys()].sort((a, b) => a - b)) {
      const rb = rows.get(rk);
      const res = resOf(rb[0]);
      const level = rb[0].compaction.level || 0;
      const lanes = layoutRow(rb);
      const row = el("div", "row");
      row.append(el("div", "name", `${RES[res] || res + "ms"} · level ${level} (${rb.length})`));
      const track = el("div", "track");
      track.style.height = lanes * 19 + 3 + "px";
      for (const b of rb) {
        const d = el("div", "blk");
        d.style.left = pos(b.minTime) + "%";
        d.style.width = `max(3px, calc(${pos(b.maxTime) - pos(b.minTime)}% - 1px))`;
        d.style.top = b._lane * 19 + 2 + "px";
        d.style.background = LEVEL_COLORS[Math.min(level, LEVEL_COLORS.length) - 1] || LEVEL_COLORS[0];
        const marks = state.markers[b.ulid] || [];
        if (marks.includes("deletion-mark.json")) d.classList.add("deletion");
        if (marks.includes("no-compact-mark.json")) d.classList.add("nocompact");
        if (b._overlap) {
          d.classList.add("overlap");
          overlapping.push(b.ulid);
        }
        if (!matches(b)) d.classList.add("dim");
        if (state.selected === b.ulid) d.classList.add("sel");
        d.textContent = fmtDuration(b.maxTime - b.minTime);
        d.title = `${b.ulid}\n${fmtTime(b.minTime)} – ${fmtTime(b.maxTime)}`;
        d.onclick = () => select(b);
        track.append(d);
      }
      row.append(track);
      panel.append(row);
    }
    if (overlapping.length) {
      h.querySelector("small").textContent += ` · ${overlapping.length} overlapping`;
    }
    panels.append(panel);
  }
  const sel = state.blocks.find((b) => b.ulid === state.selected);
  if (sel) details(sel);
  else summary(all);
}

// With no block selected: what an operator looks for first.
function summary(all) {
  const box = $("details");
  box.replaceChildren(el("h2", "", "Bucket"));
  const t = el("table");
  const count = (f) => all.filter(f).length;
  const byRes = {};
  for (const b of all) byRes[RES[resOf(b)] || resOf(b)] = (byRes[RES[resOf(b)] || resOf(b)] || 0) + 1;
  const overlapping = all.filter((b) => b._overlap);
  const groups = new Set(all.map((b) => labelKey(labelsOf(b))));
  const rows = [
    ["groups", String(groups.size)],
    ["blocks", fmtNum(all.length) + " (" + Object.entries(byRes).map(([r, n]) => `${n} ${r}`).join(", ") + ")"],
    ["size", fmtBytes(all.reduce((s, b) => s + sizeOf(b), 0))],
    ["time span", all.length ? fmtTime(Math.min(...all.map((b) => b.minTime))) + " – " + fmtTime(Math.max(...all.map((b) => b.maxTime))) : ""],
    ["marked for deletion", fmtNum(count(isDeleted))],
    ["no-compact", fmtNum(count((b) => (state.markers[b.ulid] || []).includes("no-compact-mark.json")))],
    ["no-downsample", fmtNum(count((b) => (state.markers[b.ulid] || []).includes("no-downsample-mark.json")))],
    ["overlapping", fmtNum(overlapping.length) + (overlapping.length ? " in " + new Set(overlapping.map((b) => labelKey(labelsOf(b)))).size + " group(s)" : "")],
  ];
  for (const [k, v] of rows) {
    const tr = el("tr");
    tr.append(el("td", "", k), el("td", "", v));
    t.append(tr);
  }
  box.append(t, el("p", "hint", "Select a block for its details and the mark buttons."));
}

function select(b) {
  state.selected = b.ulid;
  history.replaceState(null, "", "#" + b.ulid);
  render();
}

function details(b) {
  const box = $("details");
  box.replaceChildren();
  box.append(el("h2", "", b.ulid));
  const t = el("table");
  const marks = state.markers[b.ulid] || [];
  const rows = [
    ["start", fmtTime(b.minTime)],
    ["end", fmtTime(b.maxTime)],
    ["duration", fmtDuration(b.maxTime - b.minTime)],
    ["series", fmtNum(b.stats.numSeries)],
    ["samples", fmtNum(b.stats.numSamples)],
    ["chunks", fmtNum(b.stats.numChunks)],
    ["size", fmtBytes(sizeOf(b))],
    ["level", String(b.compaction.level)],
    ["resolution", RES[resOf(b)] || String(resOf(b))],
    ["source", (b.thanos && b.thanos.source) || ""],
    ["sources", String((b.compaction.sources || []).length) + " block(s)"],
    ["labels", labelKey(labelsOf(b))],
    ["markers", marks.length ? marks.join(", ") : "none"],
    ["overlaps", b._overlap ? "yes, with another block of its row" : "no"],
  ];
  for (const [k, v] of rows) {
    const tr = el("tr");
    tr.append(el("td", "", k), el("td", "", v));
    t.append(tr);
  }
  box.append(t);
  const actions = el("div", "actions");
  const detail = el("input");
  detail.placeholder = "detail (why)";
  const msg = el("div", "msg");
  const bd = el("button", "danger", "Mark for deletion");
  const bn = el("button", "", "Mark no-compact");
  bd.onclick = () => mark(b.ulid, "DELETION", detail.value, msg);
  bn.onclick = () => mark(b.ulid, "NO_COMPACTION", detail.value, msg);
  const btns = el("div");
  btns.append(bd, bn);
  actions.append(detail, btns, msg);
  box.append(actions);
}

async function mark(id, action, detail, msg) {
  if (action === "DELETION" && !confirm(`Mark ${id} for deletion?`)) return;
  const body = new URLSearchParams({ id, action, detail });
  const r = await fetch("/api/v1/blocks/mark", { method: "POST", body });
  const j = await r.json().catch(() => ({ error: r.statusText }));
  msg.textContent = j.status === "success" ? "marker written" : "refused: " + (j.error || r.status);
  if (j.status === "success") load();
}

$("loaded").onchange = load;
$("hidedeleted").onchange = render;
state.selected = location.hash.slice(1) || null;
$("find").oninput = (e) => {
  state.find = e.target.value.trim();
  render();
};
load();
setInterval(load, 60000);
