// c98k browse: the grid, playback, filters, failures view and corrections. Plain JS, no build step.
// Every value from the manifest goes into the page as text (textContent), never as HTML.
"use strict";

const PAGE = 60;
const $ = (sel, el = document) => el.querySelector(sel);
const state = { offset: 0, total: null, meta: null, anchor: null };
const form = $("#filters");

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function mediaUrl(path) {
  return "/media/" + path.split("/").map(encodeURIComponent).join("/");
}

function params() {
  const p = new URLSearchParams();
  for (const input of form.elements) {
    if (!input.name) continue;
    if (input.type === "checkbox") { if (input.checked) p.set(input.name, "true"); }
    else if (input.value.trim() !== "") p.set(input.name, input.value.trim());
  }
  return p;
}

async function api(url, options) {
  const r = await fetch(url, options);
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function fillSelect(name, values, label) {
  const select = form.elements[name];
  const keep = select.value;
  select.replaceChildren(el("option", null, "any"));
  select.firstChild.value = "";
  for (const [value, n] of values) {
    const o = el("option", null, label ? label(value, n) : `${value} (${n})`);
    o.value = value;
    select.append(o);
  }
  select.value = keep;
}

async function loadMeta() {
  const meta = await api("/api/meta");
  state.meta = meta;
  $("#source").textContent = meta.manifest + (meta.indexing ? " · indexing…" : ` · ${meta.facets.rows} rows`);
  if (!$("#who").value) $("#who").value = localStorage.getItem("c98k-who") || meta.who;
  if (meta.facets) {
    fillSelect("category", meta.facets.category);
    fillSelect("predicted", meta.facets.predicted_category);
    fillSelect("emotion", meta.facets.emotion);
    fillSelect("status", meta.facets.status);
  }
  return meta;
}

function categoryLine(row) {
  const box = el("div", "cats");
  const crawl = row.category || "?";
  const pred = row.predicted_category;
  const fixed = (row.corrections || []).find((c) => c.kind === "category");
  box.append(el("span", "crawl", `crawl: ${crawl}`));
  if (pred) {
    const p = row.p_predicted == null ? "" : ` ${row.p_predicted.toFixed(2)}`;
    box.append(el("span", pred !== row.category ? "pred disagree" : "pred", `predicted: ${pred}${p}`));
  }
  if (row.category_confidence != null) {
    box.append(el("span", "conf", `P(crawl) ${row.category_confidence.toFixed(2)}`));
  }
  if (fixed) box.append(el("span", "fixed", `corrected: ${fixed.value}`));
  return box;
}

function tagList(row) {
  const box = el("div", "tags");
  (row.tags || []).forEach((t, i) => {
    const src = row.tag_sources && row.tag_sources[i];
    const tag = el("span", "tag" + (src ? " src-" + src : ""), t);
    if (src) tag.append(el("sub", null, src));
    box.append(tag);
  });
  return box;
}

function play(card, row) {
  const media = $(".media", card);
  const start = row.clip_start_s || 0;
  const end = row.clip_end_s || start + 30;
  const video = document.createElement("video");
  video.className = "player";
  video.controls = true;
  video.muted = true;  // browsers only autoplay muted media; the controls unmute
  video.preload = "auto";
  video.src = `${mediaUrl(row.video_path)}#t=${start.toFixed(3)},${end.toFixed(3)}`;
  video.dataset.start = start;
  video.dataset.end = end;
  video.addEventListener("timeupdate", () => {
    if (video.currentTime >= end) video.pause();
  });
  video.addEventListener("play", () => {
    if (video.currentTime < start - 0.3 || video.currentTime >= end) video.currentTime = start;
  });
  media.replaceChildren(video);
  video.play().catch(() => {});
}

async function correct(card, row, body) {
  const msg = $(".msg", card);
  msg.textContent = "saving…";
  msg.className = "msg";
  const who = $("#who").value.trim();
  if (who) body.who = who;
  try {
    const saved = await api("/api/corrections", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    row.corrections = (row.corrections || []).filter((c) => !(c.kind === saved.kind && c.other === saved.other));
    row.corrections.push(saved);
    msg.textContent = `saved (${saved.kind}${saved.value ? ": " + saved.value : ""}, ${saved.who})`;
    msg.className = "msg ok";
    showFixes(card, row);
  } catch (e) {
    msg.textContent = e.message;
    msg.className = "msg err";
  }
}

function showFixes(card, row) {
  const box = $(".fixes", card);
  box.replaceChildren();
  for (const c of row.corrections || []) {
    const text = c.kind === "category" ? `category → ${c.value}` : c.kind === "unusable"
      ? `unusable: ${c.reason}` : `join with ${c.other}: ${c.value}`;
    box.append(el("span", "fix", `${text} (${c.who})`));
  }
  card.classList.toggle("unusable", (row.corrections || []).some((c) => c.kind === "unusable"));
}

function renderCard(row) {
  const card = $("#card").content.firstElementChild.cloneNode(true);
  card.dataset.clipId = row.clip_id;
  const start = row.clip_start_s || 0;
  const end = row.clip_end_s || start;
  const thumb = $(".thumb", card);
  thumb.addEventListener("error", () => thumb.classList.add("missing"));  // an unreadable video: no picture
  if (row.video_path) {
    thumb.src = `/thumb?video=${encodeURIComponent(row.video_path)}&t=${((start + end) / 2).toFixed(2)}`;
    $(".play", card).addEventListener("click", () => play(card, row));
  } else {
    $(".play", card).disabled = true;
  }
  $(".span", card).textContent = `${start.toFixed(1)}–${end.toFixed(1)} s`;
  $(".title", card).textContent = row.title || "(no title)";
  $(".id", card).textContent = row.clip_id;
  $(".body", card).replaceChild(categoryLine(row), $(".cats", card));
  $(".emotions", card).replaceChildren(...(row.top_emotions || []).map(([name, p]) => {
    const e = el("span", "emotion", `${name} ${p.toFixed(2)}`);
    e.style.setProperty("--p", p);
    return e;
  }));
  $(".body", card).replaceChild(tagList(row), $(".tags", card));
  if (row.ocr_text) $(".ocr", card).textContent = `on screen: ${row.ocr_text}`;
  if (row.music_id) {
    const a = el("a", "music-link", row.music_id);
    a.href = "#";
    a.title = "all clips of this track";
    a.addEventListener("click", (ev) => { ev.preventDefault(); showTrack(row.music_id); });
    $(".music", card).append("♪ ", a);
  }
  if (row.status && row.status !== "ok") {
    card.classList.add("stopped");
    $(".status", card).textContent = `${row.stopped || row.status}: ${row.error || "(no error text)"}`;
  }
  const select = $(".fix-category", card);
  for (const c of state.meta ? state.meta.categories : []) {
    const o = el("option", null, `${c.id} · ${c.name_en}`);
    o.value = c.id;
    select.append(o);
  }
  select.value = row.predicted_category || row.category || "";
  $(".set-category", card).addEventListener("click", () =>
    correct(card, row, { clip_id: row.clip_id, kind: "category", value: select.value }));
  $(".set-unusable", card).addEventListener("click", () =>
    correct(card, row, { clip_id: row.clip_id, kind: "unusable", reason: $(".fix-reason", card).value.trim() }));
  if (state.anchor && row.music_id === form.elements.music_id.value && row.clip_id !== state.anchor) {
    const join = $(".join", card);
    join.hidden = false;
    $(".join-label", card).textContent = `same track as ${state.anchor}?`;
    for (const [cls, value] of [[".join-confirm", "confirm"], [".join-reject", "reject"]]) {
      $(cls, card).addEventListener("click", () =>
        correct(card, row, { clip_id: row.clip_id, kind: "music_join", value, other: state.anchor }));
    }
  }
  showFixes(card, row);
  return card;
}

let seq = 0;
async function load() {
  const mine = ++seq;
  const p = params();
  p.set("offset", state.offset);
  p.set("limit", PAGE);
  const count = $("#count");
  count.textContent = "loading…";
  let page;
  try {
    page = await api("/api/clips?" + p.toString());
  } catch (e) {
    count.textContent = e.message;
    count.className = "err";
    return;
  }
  if (mine !== seq) return;  // a newer request was sent meanwhile
  count.className = "";
  state.total = page.total;
  if (form.elements.music_id.value && state.offset === 0) state.anchor = page.rows.length ? page.rows[0].clip_id : null;
  const last = state.offset + page.rows.length;
  count.textContent = page.rows.length === 0 ? "no clips match"
    : `${state.offset + 1}–${last} of ${page.total === null ? "many (indexing…)" : page.total.toLocaleString()}`;
  $("#prev").disabled = state.offset === 0;
  $("#next").disabled = page.total === null ? page.rows.length < PAGE : last >= page.total;
  $("#grid").replaceChildren(...page.rows.map(renderCard));
  showScope();
  if (page.indexing) waitForIndex().then(() => { if (mine === seq) load(); });
}

// While the server indexes a large manifest, pages are streamed without a count; ask for the
// count (and the filter menus) again once the index is ready, without streaming meanwhile.
let indexWait = null;
function waitForIndex() {
  indexWait = indexWait || (async () => {
    for (;;) {
      await new Promise((r) => setTimeout(r, 1000));
      const meta = await loadMeta().catch(() => ({ indexing: true }));
      if (!meta.indexing) break;
    }
    indexWait = null;
  })();
  return indexWait;
}

function showScope() {
  const scope = $("#scope");
  const bits = [];
  if (form.elements.stopped.value) bits.push(`stopped at: ${form.elements.stopped.value}`);
  if (form.elements.cause.value) bits.push(`cause: ${form.elements.cause.value}`);
  if (form.elements.music_id.value) bits.push(`track ${form.elements.music_id.value} (join checks against the first clip)`);
  scope.hidden = bits.length === 0;
  const clear = el("button", null, "clear");
  clear.type = "button";
  clear.addEventListener("click", () => {
    form.elements.stopped.value = form.elements.cause.value = form.elements.music_id.value = "";
    reload();
  });
  scope.replaceChildren(el("span", null, bits.join(" · ")), clear);
}

function showTrack(musicId) {
  form.elements.music_id.value = musicId;
  form.elements.sort.value = "clip_id";
  reload();
}

function reload() {
  state.offset = 0;
  state.anchor = null;
  load();
}

function switchTab(name) {
  $("#view-clips").hidden = name !== "clips";
  $("#view-failures").hidden = name !== "failures";
  $("#tab-clips").classList.toggle("active", name === "clips");
  $("#tab-failures").classList.toggle("active", name === "failures");
  if (name === "failures") loadFailures();
}

async function loadFailures() {
  const body = $("#failures tbody");
  body.replaceChildren(el("tr", null, "loading…"));
  const { groups } = await api("/api/failures");
  body.replaceChildren(...groups.map((g) => {
    const tr = el("tr");
    tr.append(el("td", null, g.stopped), el("td", null, g.cause || ""));
    const open = el("a", null, `${g.count}`);
    open.href = "#";
    open.addEventListener("click", (ev) => {
      ev.preventDefault();
      form.reset();
      form.elements.stopped.value = g.stopped;
      form.elements.cause.value = g.cause || "";
      switchTab("clips");
      reload();
    });
    const td = el("td");
    td.append(open);
    tr.append(td, el("td", "muted", g.examples.join(", ")));
    return tr;
  }));
  if (!groups.length) body.replaceChildren(el("tr", null, "no row stopped"));
}

let typing;
form.addEventListener("input", (ev) => {
  clearTimeout(typing);
  typing = setTimeout(reload, ev.target.type === "search" || ev.target.type === "text" ? 300 : 0);
});
form.addEventListener("submit", (ev) => { ev.preventDefault(); reload(); });
form.addEventListener("reset", () => setTimeout(reload, 0));
$("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); load(); });
$("#next").addEventListener("click", () => { state.offset += PAGE; load(); });
$("#tab-clips").addEventListener("click", () => switchTab("clips"));
$("#tab-failures").addEventListener("click", () => switchTab("failures"));
$("#who").addEventListener("change", () => localStorage.setItem("c98k-who", $("#who").value.trim()));

loadMeta().then(load, (e) => { $("#count").textContent = e.message; });
