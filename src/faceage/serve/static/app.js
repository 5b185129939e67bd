// faceage page: upload a photo, draw a box with the age on each face, list the faces. No build step.
"use strict";
const $ = (id) => document.getElementById(id);
const COLOURS = ["#e4572e", "#29335c", "#17bebb", "#f3a712", "#a8c686", "#669bbc"];

function setStatus(text, kind) {
  const status = $("status");
  status.textContent = text;
  status.className = kind || "";
}

async function send(file) {
  if (!file) return;
  setStatus(`Estimating ages in ${file.name}…`);
  $("result").hidden = true;
  const form = new FormData();
  form.append("image", file, file.name);
  let response, body;
  try {
    response = await fetch("/v1/estimate", { method: "POST", body: form });
    body = await response.json();
  } catch (err) {
    setStatus(`The server could not be reached (${err}). Try again.`, "error");
    return;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    setStatus(`Refused: ${message}`, "error");
    return;
  }
  await show(file, body);
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot display this image"));
    img.src = url;
  });
}

async function show(file, body) {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const { width, height } = body.image;
  canvas.width = width;
  canvas.height = height;
  try {
    const img = await loadImage(file); // browsers apply EXIF orientation, as the server does
    ctx.drawImage(img, 0, 0, width, height);
  } catch (err) {
    ctx.fillStyle = "#ddd";
    ctx.fillRect(0, 0, width, height);
  }
  const line = Math.max(2, Math.round(Math.min(width, height) / 200));
  const fontSize = Math.max(14, Math.round(Math.min(width, height) / 28));
  ctx.font = `bold ${fontSize}px system-ui, sans-serif`;
  const rows = $("faces").querySelector("tbody");
  rows.innerHTML = "";
  body.faces.forEach((face, i) => {
    const [x1, y1, x2, y2] = face.box;
    const colour = COLOURS[i % COLOURS.length];
    ctx.strokeStyle = colour;
    ctx.lineWidth = line;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = `${i + 1}: ${face.age.toFixed(0)} (${face.age_low.toFixed(0)}-${face.age_high.toFixed(0)})`;
    const textWidth = ctx.measureText(label).width + 8;
    const top = y1 - fontSize - 6 >= 0 ? y1 - fontSize - 6 : y2;
    ctx.fillStyle = colour;
    ctx.fillRect(x1, top, textWidth, fontSize + 6);
    ctx.fillStyle = "white";
    ctx.fillText(label, x1 + 4, top + fontSize);
    const row = rows.insertRow();
    row.className = "face";
    [String(i + 1), face.age.toFixed(1), `${face.age_low.toFixed(1)} – ${face.age_high.toFixed(1)}`, face.bin,
     `${(face.bin_probs[face.bin] * 100).toFixed(0)}%`].forEach((text) => { row.insertCell().textContent = text; });
  });
  canvas.dataset.faceCount = String(body.faces.length);
  $("timing").textContent = `${body.model.name} · ${body.elapsed_ms} ms on the server`;
  $("result").hidden = false;
  if (body.faces.length === 0) {
    setStatus("No face found in this photo. Try one where the face is larger, frontal and well lit.", "warn");
  } else {
    setStatus(`${body.faces.length} face${body.faces.length > 1 ? "s" : ""} found.`);
  }
}

for (const id of ["file", "camera"]) {
  $(id).addEventListener("change", (event) => { send(event.target.files[0]); event.target.value = ""; });
}
const drop = $("drop");
["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
  event.preventDefault(); drop.classList.add("over");
}));
["dragleave", "drop"].forEach((name) => drop.addEventListener(name, (event) => {
  event.preventDefault(); drop.classList.remove("over");
}));
drop.addEventListener("drop", (event) => send(event.dataTransfer.files[0]));
fetch("/v1/model").then((r) => r.json()).then((model) => {
  $("limit").textContent = `${Math.round(model.limits.max_upload_bytes / 1024 / 1024)} MB`;
}).catch(() => {});
