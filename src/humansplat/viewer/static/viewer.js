// humansplat viewer: the reconstruction (scene/scene.json) in 3D with gsplat.js, orbit controls,
// colour <-> body-part colours, and the posed frames when the result is animated.
import * as SPLAT from "./vendor/gsplat/gsplat.js";

const ORBIT = { alpha: 0, beta: 0.1, radius: 4.2 }; // radians, radians, metres (the subject is ~1.7 m tall)
// scene/*.splat are written turned for gsplat.js (+Y down); a bare result .splat ("frame": "world") is
// +Y up with the subject facing +Z: turn it half a turn about X.
const UPRIGHT = SPLAT.Quaternion.FromEuler(new SPLAT.Vector3(Math.PI, 0, 0));

const canvas = document.getElementById("canvas");
const status = document.getElementById("status");
const partsButton = document.getElementById("parts");
const playButton = document.getElementById("play");
const renderer = new SPLAT.WebGLRenderer(canvas);
renderer.backgroundColor = new SPLAT.Color32(255, 255, 255, 255);
const scene = new SPLAT.Scene();
const camera = new SPLAT.Camera();
const controls = new SPLAT.OrbitControls(camera, canvas, ORBIT.alpha, ORBIT.beta, ORBIT.radius);
const state = { parts: false, playing: true, frame: 0, shown: null, ready: false };
window.humansplatViewer = state; // for tests and the console

async function loadSplat(url, world) {
  const holder = new SPLAT.Scene(); // load off-screen; only the shown splat is in `scene`
  const splat = await SPLAT.Loader.LoadAsync(url, holder, () => {});
  if (world) splat.rotation = UPRIGHT;
  return splat;
}

async function loadPair(base, entry) {
  const world = entry.frame === "world";
  return {
    colour: await loadSplat(base + entry.colour, world),
    parts: entry.parts ? await loadSplat(base + entry.parts, world) : null,
  };
}

function show(pair) {
  const splat = state.parts && pair.parts ? pair.parts : pair.colour;
  if (splat === state.shown) return;
  if (state.shown) scene.removeObject(state.shown);
  scene.addObject(splat);
  state.shown = splat;
}

async function main() {
  const manifest = await (await fetch("scene/scene.json")).json();
  document.getElementById("title").textContent = manifest.name || "humansplat";
  const still = await loadPair("scene/", manifest);
  const frames = [];
  for (const entry of manifest.frames || []) frames.push(await loadPair("scene/frames/", entry));
  const notes = [manifest.parts_note, manifest.animation_note].filter(Boolean);
  status.textContent = `${manifest.num_gaussians.toLocaleString()} Gaussians` + (notes.length ? " · " + notes.join(" · ") : "");
  partsButton.disabled = !still.parts;
  playButton.hidden = frames.length === 0;

  const togglePlay = () => { state.playing = !state.playing; playButton.textContent = state.playing ? "Pause" : "Play"; };
  const toggleParts = () => {
    if (!still.parts) return;
    state.parts = !state.parts;
    partsButton.textContent = state.parts ? "Colour" : "Body parts";
  };
  partsButton.onclick = toggleParts;
  playButton.onclick = togglePlay;
  window.addEventListener("keydown", (e) => {
    if (e.key === "p" || e.key === "P") toggleParts();
    if (e.key === " " && frames.length) togglePlay();
  });
  window.addEventListener("resize", () => renderer.resize());

  let last = null; // time of the last frame change (animation frames advance at manifest.fps while playing)
  const frame = (now) => {
    if (frames.length && state.playing) {
      if (last === null) last = now;
      const steps = Math.floor(((now - last) / 1000) * manifest.fps);
      if (steps > 0) { state.frame = (state.frame + steps) % frames.length; last = now; }
    }
    show(frames.length ? frames[state.frame] : still);
    controls.update();
    renderer.render(scene, camera);
    state.ready = true;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}

main().catch((e) => { status.textContent = "could not load the scene: " + e; });
