// Checks the import direction (.dependency-cruiser.cjs) over src/: `npm run lint:deps`.
// dependency-cruiser 18's command line refuses Node 20 on a version check alone
// (engines ^22); its API runs on Node 20, so this calls the API and prints the
// violations in the command line's `err` format. Exit 1 on any violation.
import { cruise } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';

const options = await extractDepcruiseOptions('./.dependency-cruiser.cjs');
const result = await cruise(['src'], { ...options, validate: true, outputType: 'err' }, {}, { tsConfig: extractTSConfig('tsconfig.json') });
process.stdout.write(result.output);
if (result.exitCode !== 0) process.exit(1);
