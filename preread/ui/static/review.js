// PreRead study review: the keyboard, the slice viewer to add missed nodules, the signing
// dialog. The state is the form itself (radio buttons, selects, hidden inputs): this script
// only fills it in, so that what is signed is exactly what the plain form posts.
//
// Keys (outside text fields): j/ArrowDown next finding, k/ArrowUp previous, a accept and next,
// r then 1-6 reject with a reason (6: other, type what, Enter), c correct (Tab between fields,
// Enter), n add a nodule (slice viewer), s sign (Enter confirms), ? help, Esc back.
// Five findings: a a a a a s Enter = 7 keystrokes.

const root = document.getElementById("review");
const form = document.getElementById("review-form");
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const findings = [...document.querySelectorAll("section.finding")];
const links = new Map(
  [...document.querySelectorAll("#finding-list a[data-finding]")].map((a) => [a.dataset.finding, a]),
);
const signDialog = document.getElementById("sign-dialog");
const helpDialog = document.getElementById("help-dialog");
const REASON_KEYS = [...document.querySelectorAll("#review-form select[name^='reason-'] option")]
  .filter((o) => o.value)
  .slice(0, 6)
  .map((o) => o.value);
const REASON_COUNT = REASON_KEYS.length;

document.documentElement.classList.add("js");

let current = 0;
let mode = "findings"; // findings | reason | text | correct | viewer

function field(section, name) {
  return form.elements[`${name}-${section.dataset.finding}`];
}

function verdictOf(section) {
  const checked = section.querySelector("input[type=radio]:checked");
  return checked ? checked.value : "";
}

function setVerdict(section, value) {
  const radio = section.querySelector(`input[type=radio][value="${value}"]`);
  radio.checked = true;
  refresh();
}

function describe(section) {
  const verdict = verdictOf(section);
  if (verdict === "reject") {
    const reason = field(section, "reason");
    const label = reason.selectedOptions[0] ? reason.selectedOptions[0].textContent : "";
    return reason.value ? `rejected: ${label.replace(/^\d · /, "")}` : "rejected (reason?)";
  }
  if (verdict === "correct") return "corrected";
  if (verdict === "accept") return "accepted";
  return "";
}

function refresh() {
  findings.forEach((section, n) => {
    const number = section.dataset.finding;
    section.classList.toggle("current", n === current);
    const status = document.getElementById(`status-${number}`);
    if (status) status.textContent = describe(section);
    const link = links.get(number);
    if (link) {
      link.classList.toggle("current", n === current);
      if (n === current) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
      link.classList.toggle("done", Boolean(verdictOf(section)));
    }
  });
  document.getElementById("added-count").textContent = String(
    form.querySelectorAll("input[name=added]").length +
      form.querySelectorAll("input[name=keep]:checked").length,
  );
}

function show(n) {
  if (!findings.length) return;
  current = Math.max(0, Math.min(findings.length - 1, n));
  mode = "findings";
  refresh();
  const section = findings[current];
  section.focus({ preventScroll: true });
  section.scrollIntoView({ block: "start" });
}

function next() {
  const open = findings.findIndex((s, n) => n > current && !verdictOf(s));
  if (current < findings.length - 1) show(open >= 0 ? open : current + 1);
  else document.getElementById("sign-button").focus();
}

function accept() {
  setVerdict(findings[current], "accept");
  next();
}

function reject() {
  setVerdict(findings[current], "reject");
  mode = "reason";
  field(findings[current], "reason").classList.add("armed");
}

function pickReason(digit) {
  const section = findings[current];
  const select = field(section, "reason");
  select.classList.remove("armed");
  select.value = REASON_KEYS[digit - 1];
  refresh();
  if (select.value === "other") {
    mode = "text";
    field(section, "reason_text").focus();
  } else {
    next();
  }
}

function correct() {
  setVerdict(findings[current], "correct");
  mode = "correct";
  field(findings[current], "type").focus();
}

function missing() {
  return findings.filter((s) => {
    const verdict = verdictOf(s);
    return !verdict || (verdict === "reject" && !field(s, "reason").value);
  });
}

function openSign() {
  const open = missing();
  if (open.length) {
    show(findings.indexOf(open[0]));
    say(`Not yet: finding ${open.map((s) => s.dataset.finding).join(", ")} needs a verdict.`);
    return;
  }
  const counts = { accepted: 0, rejected: 0, corrected: 0 };
  findings.forEach((s) => {
    const v = verdictOf(s);
    counts[v === "accept" ? "accepted" : v === "reject" ? "rejected" : "corrected"] += 1;
  });
  const added = document.getElementById("added-count").textContent;
  document.getElementById("sign-summary").textContent =
    `${counts.accepted} accepted, ${counts.rejected} rejected, ${counts.corrected} corrected, ` +
    `${added} added by you.`;
  signDialog.showModal();
  document.getElementById("sign-confirm").focus();
}

function say(text) {
  document.getElementById("slice-info").textContent = text;
  let note = document.getElementById("review-note");
  if (!note) {
    note = document.createElement("p");
    note.id = "review-note";
    note.className = "error";
    note.setAttribute("role", "alert");
    root.querySelector(".study-head").append(note);
  }
  note.textContent = text;
}

// --- the slice viewer ---------------------------------------------------------------------

const viewer = document.getElementById("viewer");
const image = document.getElementById("slice");
const cross = document.getElementById("cross");
const info = document.getElementById("slice-info");
const candidateBox = document.getElementById("candidate");
const slices = new Map(); // index -> data URL (the last 64 seen)
let grid = null; // [slices, rows, columns]
let index = null;
let wanted = null;
let loading = false;
let point = null; // [row, column] of the cross, in voxels
let candidate = null;

function dataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

async function load(query) {
  loading = true;
  try {
    const answer = await fetch(`${root.dataset.sliceUrl}?${query}`, { credentials: "same-origin" });
    if (!answer.ok || !answer.headers.get("X-Preread-Grid")) {
      info.textContent = answer.ok ? "Signed out: reload the page." : `No slice (${answer.status}).`;
      return;
    }
    grid = answer.headers.get("X-Preread-Grid").split(",").map(Number);
    index = Number(answer.headers.get("X-Preread-Slice"));
    const url = await dataUrl(await answer.blob()); // the pages' CSP allows data:, not blob:
    slices.set(index, url);
    if (slices.size > 64) slices.delete(slices.keys().next().value);
    if (wanted === null || wanted === index) image.src = url;
    if (point === null) point = [grid[1] / 2, grid[2] / 2];
    caption();
  } finally {
    loading = false;
    if (wanted !== null && wanted !== index) go(wanted);
  }
}

function caption() {
  if (grid) info.textContent = `Slice ${index + 1} of ${grid[0]}`;
}

function go(target) {
  if (!grid) return;
  wanted = Math.max(0, Math.min(grid[0] - 1, target));
  const cached = slices.get(wanted);
  if (cached) {
    index = wanted;
    image.src = cached;
    caption();
    return;
  }
  info.textContent = `Slice ${wanted + 1} of ${grid[0]}…`;
  if (!loading) load(`index=${wanted}`);
}

function openViewer() {
  mode = "viewer";
  viewer.scrollIntoView({ block: "start" });
  viewer.focus({ preventScroll: true });
  if (!grid && !loading) {
    const finding = findings[current];
    load(finding ? `finding=${finding.dataset.finding}` : "");
  }
}

function placeCross() {
  if (!grid || point === null || !image.clientWidth) return;
  cross.hidden = false;
  cross.style.left = `${((point[1] + 0.5) / grid[2]) * image.clientWidth}px`;
  cross.style.top = `${((point[0] + 0.5) / grid[1]) * image.clientHeight}px`;
}

async function measureAt(row, column) {
  if (!grid) return;
  point = [row, column];
  placeCross();
  info.textContent = "Measuring…";
  const answer = await fetch(root.dataset.measureUrl, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify({ index, row, column }),
  });
  const type = answer.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await answer.json() : null;
  if (!answer.ok || !body) {
    candidate = null;
    candidateBox.hidden = true;
    info.textContent = body && body.detail ? String(body.detail) : `Not measured (${answer.status}).`;
    return;
  }
  candidate = body;
  document.getElementById("candidate-text").textContent =
    `${body.nodule_type} nodule: long axis ${body.long_axis_mm.toFixed(1)} mm, short axis ` +
    `${body.short_axis_mm.toFixed(1)} mm, volume ${body.volume_mm3.toFixed(0)} mm³, ` +
    `mean ${body.mean_hu.toFixed(0)} HU (centre on slice ${body.index + 1}).`;
  const images = document.getElementById("candidate-images");
  images.replaceChildren(
    ...Object.entries(body.images).map(([plane, url]) => {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.src = url;
      img.alt = `${plane} plane through the nodule found, its extent in yellow`;
      const caption = document.createElement("figcaption");
      caption.textContent = plane;
      figure.append(img, caption);
      return figure;
    }),
  );
  candidateBox.hidden = false;
  info.textContent = "Found a nodule: Enter adds it, Esc discards it.";
}

function confirmCandidate() {
  if (!candidate) return;
  const item = document.createElement("li");
  const input = document.createElement("input");
  input.type = "hidden";
  input.name = "added";
  input.value = candidate.point;
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "remove-added";
  remove.textContent = "Remove";
  item.append(
    input,
    `Nodule you added: ${candidate.nodule_type}, ${candidate.long_axis_mm.toFixed(1)} × ` +
      `${candidate.short_axis_mm.toFixed(1)} mm `,
    remove,
  );
  document.getElementById("added-list").append(item);
  discardCandidate();
  info.textContent = "Added. It is measured again when you sign.";
  refresh();
}

function discardCandidate() {
  candidate = null;
  candidateBox.hidden = true;
}

function viewerKey(event) {
  const step = event.key === "PageUp" || event.key === "PageDown" ? 10 : 1;
  if (event.shiftKey && event.key.startsWith("Arrow") && grid) {
    const d = Math.max(1, Math.round(grid[2] / 128)); // about a pixel of a 128-wide view
    const moves = { ArrowUp: [-d, 0], ArrowDown: [d, 0], ArrowLeft: [0, -d], ArrowRight: [0, d] };
    const [dr, dc] = moves[event.key];
    point = [
      Math.max(0, Math.min(grid[1] - 1, point[0] + dr)),
      Math.max(0, Math.min(grid[2] - 1, point[1] + dc)),
    ];
    placeCross();
  } else if (event.key === "ArrowUp" || event.key === "PageUp") go(index - step);
  else if (event.key === "ArrowDown" || event.key === "PageDown") go(index + step);
  else if (event.key === "Home") go(0);
  else if (event.key === "End" && grid) go(grid[0] - 1);
  else if (event.key === "Enter") {
    if (candidate) confirmCandidate();
    else if (point) measureAt(point[0], point[1]);
  } else if (event.key === "Escape") {
    if (candidate) discardCandidate();
    else show(current);
  } else return false;
  return true;
}

image.addEventListener("click", (event) => {
  if (!grid) return;
  const rect = image.getBoundingClientRect();
  const row = ((event.clientY - rect.top) / rect.height) * grid[1] - 0.5;
  const column = ((event.clientX - rect.left) / rect.width) * grid[2] - 0.5;
  mode = "viewer";
  viewer.focus({ preventScroll: true });
  measureAt(row, column);
});
image.addEventListener("load", placeCross);
viewer.addEventListener(
  "wheel",
  (event) => {
    if (!grid) return;
    event.preventDefault();
    go(index + Math.sign(event.deltaY));
  },
  { passive: false },
);
viewer.addEventListener("focus", () => {
  mode = "viewer";
  if (!grid && !loading) openViewer();
});
document.getElementById("candidate-add").addEventListener("click", confirmCandidate);
document.getElementById("candidate-discard").addEventListener("click", discardCandidate);
document.getElementById("added-list").addEventListener("click", (event) => {
  if (event.target.classList.contains("remove-added")) {
    event.target.closest("li").remove();
    refresh();
  }
});

// --- the keyboard -------------------------------------------------------------------------

function inField(target) {
  return target instanceof HTMLElement && target.matches("input, select, textarea");
}

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  if (signDialog.open || helpDialog.open) {
    if (event.key === "?" && helpDialog.open) helpDialog.close();
    return; // the dialogs' own buttons: Enter, Esc
  }
  const target = event.target;
  if (inField(target)) {
    if (event.key === "Escape") {
      event.preventDefault();
      show(current);
    } else if (event.key === "Enter" && target.type !== "radio" && target.type !== "checkbox") {
      event.preventDefault(); // commit the finding, do not submit the form
      refresh();
      if (findings.includes(target.closest("section.finding"))) next();
    }
    return;
  }
  if (mode === "viewer" && viewer.contains(target)) {
    if (viewerKey(event)) event.preventDefault();
    return;
  }
  if (mode === "reason") {
    const digit = Number(event.key);
    if (Number.isInteger(digit) && digit >= 1 && digit <= REASON_COUNT) {
      event.preventDefault();
      pickReason(digit);
      return;
    }
    if (event.key === "Escape") {
      event.preventDefault();
      field(findings[current], "reason").classList.remove("armed");
      mode = "findings";
      return;
    }
  }
  const actions = {
    j: () => show(current + 1),
    ArrowDown: () => show(current + 1),
    k: () => show(current - 1),
    ArrowUp: () => show(current - 1),
    a: accept,
    r: reject,
    c: correct,
    n: openViewer,
    s: openSign,
    "?": () => helpDialog.showModal(),
    Escape: () => show(current),
  };
  const action = findings.length || !"jkarc".includes(event.key) ? actions[event.key] : null;
  if (action) {
    event.preventDefault();
    action();
  }
});

document.getElementById("sign-cancel").addEventListener("click", () => signDialog.close());
document.getElementById("help-close").addEventListener("click", () => helpDialog.close());
form.addEventListener("change", refresh);
for (const [number, link] of links) {
  link.addEventListener("click", (event) => {
    event.preventDefault();
    show(findings.findIndex((s) => s.dataset.finding === number));
  });
}

const firstOpen = findings.findIndex((s) => !verdictOf(s));
show(firstOpen >= 0 ? firstOpen : 0);
