// What OHIF's readers make of PreRead's SR and SEG: the Cornerstone3D adapters of
// @cornerstonejs/adapters, the code OHIF 3.13 runs when the user tracks an SR's measurements
// (hydrateStructuredReport -> MeasurementReport.generateToolState) and loads a SEG
// (Segmentation.createFromDICOMSegBuffer), under node, with a metadata provider built from the
// CT files like OHIF's. Prints one JSON object on stdout.
//
//   node ohif_adapter_check.mjs <web/ohif/node_modules> <sr.dcm> <seg.dcm> <ct.dcm>...
//
// Output: {"measurements": [{toolType, trackingUniqueIdentifier, label, finding, findingSites,
// sopInstanceUid, points (world, mm), stats ({length, unit} as the adapter gives them)}],
// "groups": [{trackingIdentifier, trackingUniqueIdentifier, adapter}], "failures": [the
// errors the adapter caught and logged, one per group it dropped], "segments": [{number,
// label, voxels, slices}], "versions": {...}}. Anything the adapters throw ends the script
// with a non-zero exit status.

import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { format } from 'node:util';

const [modules, srPath, segPath, ...ctPaths] = process.argv.slice(2);
if (!modules || !srPath || !segPath || ctPaths.length === 0) {
  console.error('usage: node ohif_adapter_check.mjs <node_modules> <sr.dcm> <seg.dcm> <ct.dcm>...');
  process.exit(2);
}

/** The ES module entry of an installed package (its "import" export, else module/main). */
function entry(name) {
  const dir = path.join(modules, name);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const dot = pkg.exports?.['.'];
  const file = typeof dot === 'string' ? dot : (dot?.import ?? dot?.default ?? pkg.module ?? pkg.main);
  return { url: pathToFileURL(path.join(dir, file)).href, version: pkg.version };
}

const versions = { node: process.version };
async function load(name) {
  const { url, version } = entry(name);
  versions[name] = version;
  return import(url);
}

// The adapter logs every measurement it reads (console.log) and the groups it drops
// (console.warn 'Unable to generate tool state for', group, error): keep stdout for the JSON.
const failures = [];
console.log = () => {};
console.warn = (...args) => {
  const error = args.find(a => a instanceof Error);
  failures.push(error ? `${args[0]} ${error.name}: ${error.message}` : format(...args).slice(0, 500));
};

const dcmjs = (await load('dcmjs')).default;
const core = await load('@cornerstonejs/core');
const { adaptersSR, adaptersSEG } = await load('@cornerstonejs/adapters');
const { DicomMessage, DicomMetaDictionary } = dcmjs.data;

function bytes(file) {
  const data = fs.readFileSync(file);
  return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
}
const read = file => DicomMetaDictionary.naturalizeDataset(DicomMessage.readFile(bytes(file)).dict);

const numbers = value => (Array.isArray(value) ? value : [value]).map(Number);

// The modules OHIF's metadata provider builds from an instance's attributes (those the
// adapters ask for), by imageId and module.
const metadata = new Map();
const provider = {
  get: (type, imageId) => metadata.get(imageId)?.[type],
  add: (imageId, type, value) => metadata.set(imageId, { ...metadata.get(imageId), [type]: value }),
};
const imageIds = {};
const ctImageIds = [];
for (const file of ctPaths) {
  const ct = read(file);
  const imageId = `preread:${ct.SOPInstanceUID}`;
  const orientation = numbers(ct.ImageOrientationPatient);
  const spacing = numbers(ct.PixelSpacing);
  provider.add(imageId, 'instance', ct);
  provider.add(imageId, 'generalSeriesModule', {
    modality: ct.Modality,
    seriesInstanceUID: ct.SeriesInstanceUID,
    studyInstanceUID: ct.StudyInstanceUID,
  });
  provider.add(imageId, 'generalImageModule', {
    sopInstanceUID: ct.SOPInstanceUID,
    instanceNumber: ct.InstanceNumber,
  });
  provider.add(imageId, 'imagePixelModule', {
    samplesPerPixel: ct.SamplesPerPixel,
    photometricInterpretation: ct.PhotometricInterpretation,
    rows: ct.Rows,
    columns: ct.Columns,
    bitsAllocated: ct.BitsAllocated,
    bitsStored: ct.BitsStored,
    highBit: ct.HighBit,
    pixelRepresentation: ct.PixelRepresentation,
  });
  provider.add(imageId, 'imagePlaneModule', {
    frameOfReferenceUID: ct.FrameOfReferenceUID,
    rows: ct.Rows,
    columns: ct.Columns,
    imageOrientationPatient: orientation,
    rowCosines: orientation.slice(0, 3),
    columnCosines: orientation.slice(3, 6),
    imagePositionPatient: numbers(ct.ImagePositionPatient),
    sliceThickness: Number(ct.SliceThickness),
    pixelSpacing: spacing,
    rowPixelSpacing: spacing[0],
    columnPixelSpacing: spacing[1],
  });
  imageIds[`${ct.SOPInstanceUID}:1`] = imageId;
  ctImageIds.push([numbers(ct.ImagePositionPatient), imageId]);
}
core.metaData.addProvider(provider.get, 10000);

const sr = read(srPath);
const { MeasurementReport } = adaptersSR.Cornerstone3D;

// Which tool each measurement group is read as (by its Tracking Identifier), as OHIF decides
// whether an SR can be tracked (isRehydratable).
const asArray = value => (value === undefined ? [] : Array.isArray(value) ? value : [value]);
const meaning = item => asArray(item.ConceptNameCodeSequence)[0]?.CodeMeaning;
const report = asArray(sr.ContentSequence).find(item => meaning(item) === 'Imaging Measurements');
const groups = asArray(report?.ContentSequence)
  .filter(item => meaning(item) === 'Measurement Group')
  .map(group => {
    const content = asArray(group.ContentSequence);
    const trackingIdentifier = content.find(item => meaning(item) === 'Tracking Identifier')?.TextValue;
    const uid = content.find(item => meaning(item) === 'Tracking Unique Identifier')?.UID;
    const adapter = trackingIdentifier && MeasurementReport.getAdapterForTrackingIdentifier(trackingIdentifier);
    return { trackingIdentifier, trackingUniqueIdentifier: uid, adapter: adapter?.toolType ?? null };
  });

const state = MeasurementReport.generateToolState(sr, imageIds, core.metaData);

const code = item => {
  const c = asArray(item)[0];
  return c ? { value: c.CodeValue, scheme: c.CodingSchemeDesignator, meaning: c.CodeMeaning } : null;
};
const measurements = [];
for (const [toolType, entries] of Object.entries(state)) {
  for (const entry of entries) {
    const data = entry.annotation.data;
    const stats = Object.values(data.cachedStats ?? {})[0] ?? null;
    measurements.push({
      toolType,
      trackingUniqueIdentifier: entry.TrackingUniqueIdentifier,
      label: data.label ?? null,
      finding: entry.finding ? code(entry.finding) : null,
      findingSites: asArray(entry.findingSites).map(code),
      sopInstanceUid: entry.sopInstanceUid ?? null,
      referencedImageId: entry.annotation.metadata.referencedImageId ?? null,
      points: (data.handles?.points ?? []).map(p => Array.from(p, Number)),
      stats,
    });
  }
}
// The SEG as OHIF loads it onto the CT stack (its images in slice order)
const normal = (() => {
  const o = provider.get('imagePlaneModule', ctImageIds[0][1]).imageOrientationPatient;
  return [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
})();
const along = p => p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2];
const stack = ctImageIds.sort((a, b) => along(a[0]) - along(b[0])).map(([, imageId]) => imageId);
const seg = await adaptersSEG.Cornerstone3D.Segmentation.createFromDICOMSegBuffer(stack, bytes(segPath), {
  metadataProvider: provider,
});
const segments = [];
for (const [number, segment] of Object.entries(seg.segMetadata.data)) {
  if (!segment) continue;
  let voxels = 0;
  const slices = new Set();
  seg.labelMapImages.flat().forEach((image, k) => {
    const pixels = image.getPixelData();
    const count = pixels.reduce((n, v) => n + (v === Number(number) ? 1 : 0), 0);
    voxels += count;
    if (count) slices.add(k);
  });
  segments.push({ number: Number(number), label: segment.SegmentLabel, voxels, slices: slices.size });
}
process.stdout.write(`${JSON.stringify({ versions, groups, measurements, failures, segments }, null, 1)}\n`);
