// Compiles every pipeline of a `ttrec kernels --export DIR` under Dawn (Chrome's WebGPU
// implementation, through the npm package `webgpu`) on its null backend, which validates
// without a GPU: each shader module must compile with no error, warning or info message, and
// each pipeline must be created, with its entry point and override constants, without a
// validation error, under WebGPU's default limits.
//
//   node tools/dawn/check.mjs DIR
//
// Exit status 0 when all pass; 1 with one line per problem otherwise.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node tools/dawn/check.mjs EXPORT_DIR');
  process.exit(2);
}
const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));

const gpu = create(['backend=null']);
const adapter = await gpu.requestAdapter();
if (!adapter) {
  console.error("dawn: no adapter on Dawn's null backend");
  process.exit(1);
}
const pipelines = manifest.pipelines.map((p) => JSON.parse(readFileSync(join(dir, p), 'utf8')));
// Only the features the kernels need: subgroups where an exported shader enables them.
const needsSubgroups = pipelines.some((p) => p.webgpu.features.includes('subgroups'));
if (needsSubgroups && !adapter.features.has('subgroups')) {
  console.error("dawn: the null adapter lacks the 'subgroups' feature");
  process.exit(1);
}
const device = await adapter.requestDevice({
  requiredFeatures: needsSubgroups ? ['subgroups'] : [],
});
const lost = [];
device.addEventListener('uncapturederror', (e) => lost.push(e.error.message));

const problems = [];
const modules = new Map();
for (const p of pipelines) {
  const file = p.webgpu.wgsl;
  let module = modules.get(file);
  if (!module) {
    const code = readFileSync(join(dir, file), 'utf8');
    device.pushErrorScope('validation');
    module = device.createShaderModule({ label: file, code });
    const info = await module.getCompilationInfo();
    for (const m of info.messages) {
      problems.push(`${file}:${m.lineNum}:${m.linePos}: ${m.type}: ${m.message}`);
    }
    const err = await device.popErrorScope();
    if (err) problems.push(`${file}: ${err.message}`);
    modules.set(file, module);
  }
  device.pushErrorScope('validation');
  device.pushErrorScope('internal');
  device.pushErrorScope('out-of-memory');
  device.createComputePipeline({
    label: `${p.shader}::${p.entry_point}`,
    layout: 'auto',
    compute: { module, entryPoint: p.entry_point, constants: p.overrides },
  });
  for (let i = 0; i < 3; i++) {
    const err = await device.popErrorScope();
    if (err) problems.push(`${p.file} (${p.shader}::${p.entry_point}): ${err.message}`);
  }
}
for (const m of lost) problems.push(`uncaptured: ${m}`);
if (problems.length) {
  for (const line of problems) console.error(line);
  console.error(`dawn: ${problems.length} problem(s) in ${pipelines.length} pipelines`);
  process.exit(1);
}
console.log(`dawn: ${pipelines.length} pipelines of ${modules.size} shader modules compiled on Dawn's null backend with no diagnostics`);
device.destroy();
process.exit(0);
