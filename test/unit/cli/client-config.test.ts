/**
 * The CLI's Kinesis client config: the endpoint from --endpoint or the AWS SDK's variables, the region
 * default, and dummy credentials for an endpoint on this machine when none are configured.
 */
import { expect } from 'chai';
import { CliError } from '../../../packages/cli/src/exit.js';
import {
  clientConfig,
  endpointProblem,
  isLoopbackEndpoint,
  LOCAL_CREDENTIALS,
  resolveEndpoint,
} from '../../../packages/cli/src/kinesis.js';

function thrown(fn: () => unknown): CliError {
  try {
    fn();
  } catch (error) {
    return error as CliError;
  }
  expect.fail('expected an error');
}

describe('cli client config', () => {
  it('a loopback --endpoint gets us-east-1 and dummy credentials when nothing is configured', () => {
    expect(clientConfig({ endpoint: 'http://127.0.0.1:4567' }, {})).to.deep.equal({
      endpoint: 'http://127.0.0.1:4567',
      region: 'us-east-1',
      credentials: { ...LOCAL_CREDENTIALS },
    });
  });

  it('loopback means localhost, 127.0.0.0/8 and ::1, nothing else', () => {
    for (const url of [
      'http://localhost:4567',
      'http://127.3.2.1',
      'http://[::1]:4567',
      'https://a.localhost',
    ]) {
      expect(isLoopbackEndpoint(url), url).to.equal(true);
    }
    for (const url of [
      'http://10.0.0.1:4567',
      'https://kinesis.eu-west-1.amazonaws.com',
      'http://127.example.com',
      'http://0.0.0.0:4567',
    ]) {
      expect(isLoopbackEndpoint(url), url).to.equal(false);
      expect(clientConfig({ endpoint: url }, {}).credentials, url).to.equal(undefined);
    }
  });

  it('configured credentials (AWS_ACCESS_KEY_ID or AWS_PROFILE) are used as they are, on loopback too', () => {
    const endpoint = 'http://127.0.0.1:4567';
    expect(clientConfig({ endpoint }, { AWS_ACCESS_KEY_ID: 'AKID' }).credentials).to.equal(undefined);
    expect(clientConfig({ endpoint }, { AWS_PROFILE: 'tunnel' }).credentials).to.equal(undefined);
  });

  it('the endpoint: --endpoint, else AWS_ENDPOINT_URL_KINESIS, else AWS_ENDPOINT_URL', () => {
    const env = { AWS_ENDPOINT_URL_KINESIS: 'http://127.0.0.1:1', AWS_ENDPOINT_URL: 'http://127.0.0.1:2' };
    expect(resolveEndpoint({ endpoint: 'http://127.0.0.1:3' }, env)).to.deep.equal({
      url: 'http://127.0.0.1:3',
      source: '--endpoint',
    });
    expect(resolveEndpoint({}, env)).to.deep.equal({
      url: 'http://127.0.0.1:1',
      source: 'AWS_ENDPOINT_URL_KINESIS',
    });
    expect(
      resolveEndpoint({}, { AWS_ENDPOINT_URL: 'http://127.0.0.1:2', AWS_ENDPOINT_URL_KINESIS: '' }),
    ).to.deep.equal({
      url: 'http://127.0.0.1:2',
      source: 'AWS_ENDPOINT_URL',
    });
    expect(resolveEndpoint({}, { ...env, AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true' })).to.equal(undefined);
    expect(resolveEndpoint({}, {})).to.equal(undefined);
    // From a variable, the endpoint brings the same region and credential defaults.
    expect(clientConfig({}, { AWS_ENDPOINT_URL_KINESIS: 'http://localhost:4567' })).to.deep.equal({
      endpoint: 'http://localhost:4567',
      region: 'us-east-1',
      credentials: { ...LOCAL_CREDENTIALS },
    });
  });

  it('the region: --region, else AWS_REGION, else us-east-1 only with an endpoint', () => {
    const endpoint = 'http://127.0.0.1:4567';
    expect(clientConfig({ endpoint, region: 'eu-west-1' }, { AWS_REGION: 'ap-south-1' }).region).to.equal(
      'eu-west-1',
    );
    expect(clientConfig({ endpoint }, { AWS_REGION: 'ap-south-1' }).region).to.equal('ap-south-1');
    expect(clientConfig({}, {})).to.deep.equal({});
  });

  it('a bad endpoint variable is a usage error quoting the whole value', () => {
    const error = thrown(() => resolveEndpoint({}, { AWS_ENDPOINT_URL_KINESIS: 'localhost:4567' }));
    expect(error).to.be.instanceOf(CliError);
    expect(error.exitCode).to.equal(2);
    expect(error.message).to.equal(
      "AWS_ENDPOINT_URL_KINESIS='localhost:4567' must be an http:// or https:// URL: did you mean http://localhost:4567 ?",
    );
    expect(endpointProblem('not a url')).to.equal('must be a URL such as http://127.0.0.1:4567');
    expect(endpointProblem('ftp://127.0.0.1:21')).to.equal('must be an http:// or https:// URL');
    expect(endpointProblem('https://kinesis.eu-west-1.amazonaws.com')).to.equal(undefined);
  });
});
