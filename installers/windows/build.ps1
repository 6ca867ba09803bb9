# Builds the Windows installer: dist\vcam-me\ (PyInstaller one-folder build) and
# dist\vcam-me-<version>-windows-x64-setup.exe (Inno Setup 6).
#
#   powershell -ExecutionPolicy Bypass -File installers\windows\build.ps1
#   ... -Python C:\path\to\python.exe -Gpu       # GPU variant: that env has onnxruntime-gpu
#
# Needs: Python 3.11 x64 with the project installed (pip install -e ".[ui,bundle]"), Inno Setup 6.3 or
# newer (the script uses the x64compatible architecture identifier, new in 6.3)
# (iscc.exe on PATH or in its default folder), and internet access for UnityCapture's release
# (the DirectShow filter DLLs the installer offers when no OBS Virtual Camera is found).
param(
    [string]$Python = ".venv\Scripts\python.exe",
    [switch]$Gpu,
    [string]$UnityCaptureZip = "https://github.com/schellingb/UnityCapture/archive/refs/heads/master.zip"
)
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..\..")

if (-not (Test-Path $Python)) { throw "no Python at $Python: create .venv and pip install -e "".[ui,bundle]"" first" }
& $Python -c "import PyInstaller, PySide6" 2>$null
if ($LASTEXITCODE -ne 0) { & $Python -m pip install -q -e ".[ui,bundle]"; if ($LASTEXITCODE -ne 0) { throw "pip install failed" } }
$version = (& $Python -c "import vcam_me; print(vcam_me.__version__)").Trim()

# The icon (.ico) the spec gives both executables and the installer uses, drawn by the app's code.
& $Python installers\make_icon.py build\icon
if ($LASTEXITCODE -ne 0) { throw "make_icon.py failed" }
if ($Gpu) { $env:VCAM_ME_BUNDLE_GPU = "1" } else { Remove-Item Env:VCAM_ME_BUNDLE_GPU -ErrorAction SilentlyContinue }
& $Python -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build\pyinstaller installers\vcam_me.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }
$bundle = if ($Gpu) { "dist\vcam-me-gpu" } else { "dist\vcam-me" }
if ($Gpu) {
    # The .iss installs dist\vcam-me: build the GPU installer from a copy under that name.
    if (Test-Path dist\vcam-me) { Remove-Item -Recurse -Force dist\vcam-me }
    Copy-Item -Recurse $bundle dist\vcam-me
}

# The frozen app must start before it is packed.
& "dist\vcam-me\vcam-me.exe" --version
if ($LASTEXITCODE -ne 0) { throw "the frozen vcam-me.exe does not start" }

# UnityCapture's filter DLLs and licence, unpacked to build\unitycapture (its Install\ folder holds the DLLs).
$uc = "build\unitycapture"
if (-not (Test-Path "$uc\Install\UnityCaptureFilter64.dll")) {
    New-Item -ItemType Directory -Force build | Out-Null
    Invoke-WebRequest -Uri $UnityCaptureZip -OutFile build\unitycapture.zip
    Expand-Archive -Force build\unitycapture.zip build\unitycapture-src
    $root = Get-ChildItem build\unitycapture-src -Directory | Select-Object -First 1
    if (Test-Path $uc) { Remove-Item -Recurse -Force $uc }
    Move-Item $root.FullName $uc
}
foreach ($dll in "UnityCaptureFilter64.dll", "UnityCaptureFilter32.dll") {
    if (-not (Test-Path "$uc\Install\$dll")) { throw "UnityCapture download lacks Install\$dll" }
}

$iscc = (Get-Command iscc.exe -ErrorAction SilentlyContinue).Source
if (-not $iscc) { $iscc = Join-Path ${env:ProgramFiles(x86)} "Inno Setup 6\ISCC.exe" }
if (-not (Test-Path $iscc)) { throw "Inno Setup 6 not found: install it from https://jrsoftware.org/isdl.php" }
& $iscc "/DAppVersion=$version" installers\windows\vcam-me.iss
if ($LASTEXITCODE -ne 0) { throw "iscc failed" }
Write-Host "build: dist\vcam-me-$version-windows-x64-setup.exe"
