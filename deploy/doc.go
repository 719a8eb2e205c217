// Package deploy holds Apiary's deployment definitions, not Go code: the
// container image (Dockerfile), the local distributed stack
// (../docker-compose.yml), the AWS reference architecture
// (aws/apiary.cfn.yaml) and the environment reference (env.example).
//
// Its tests are the promise that those files keep their shape:
//
//   - the compose file loads with the compose-spec loader; the api is the only
//     service that publishes a port (8080); every service has a health check;
//     the api and the workers wait for NATS, Milvus, SQS and KMS to be
//     healthy; the shared network is internal; two workers run; no secret is
//     written in the file.
//   - the CloudFormation template parses (short-form tags included), every
//     !Ref and !GetAtt names something that exists, and it has the resources of
//     the reference architecture; when APIARY_TEST_CFN_LINT names a cfn-lint
//     binary, cfn-lint reports no error on it.
//   - every APIARY_* variable the deployment files set is documented in
//     env.example.
package deploy
