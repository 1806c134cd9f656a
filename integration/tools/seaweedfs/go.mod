// Builds SeaweedFS's weed command for the object-store tests
// (.ci/build-weed, run by make deps). A module of its own: go install
// refuses SeaweedFS's module because its go.mod has a replace directive,
// which this go.mod repeats.
module github.com/cairnbackup/cairn/integration/tools/seaweedfs

go 1.26.6

require github.com/seaweedfs/seaweedfs v0.0.0-20261109003541-7506e5f91cd6

replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0
